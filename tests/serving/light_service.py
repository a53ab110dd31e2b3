"""The service half of Lumi's served models on a plain aiohttp server, without Ray: real codecs and
real runners behind the OIP infer route, plus switches that make it fail the way a sick service does
(a proxy's 503 page while restarting, a dropped connection, a slow answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from inference.serving.codecs import CODECS
from inference.serving.models import ServedRunner
from inference.serving.oip import HEADER_LENGTH, OipError, decode_request, encode_error, encode_response

Fault = Literal["none", "proxy_503", "drop", "slow", "lumi_503"]


@dataclass
class LightService:
    runners: Mapping[str, ServedRunner]
    fault: Fault = "none"
    # Faults for the next N requests only (then back to "none"); None: until changed.
    fault_requests: int | None = None
    slow_s: float = 2.0
    requests: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> LightService:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v2/models/{name}/infer", self._infer)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _current_fault(self) -> Fault:
        fault = self.fault
        if self.fault_requests is not None:
            self.fault_requests -= 1
            if self.fault_requests < 0:
                self.fault, self.fault_requests = "none", None
                return "none"
        return fault

    async def _infer(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        fault = self._current_fault()
        if fault == "proxy_503":
            return web.Response(status=503, text="Service Unavailable")
        if fault == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if fault == "lumi_503":
            return web.Response(status=503, body=encode_error("model 'x' is unavailable: no weights"))
        name = request.match_info["name"]
        runner, codec = self.runners.get(name), CODECS.get(name)
        if runner is None or codec is None:
            return web.Response(status=404, body=encode_error(f"model {name!r} is not served here"))
        try:
            decoded = decode_request(await request.read(), request.headers.get(HEADER_LENGTH))
            items: list[Any] = codec.split_items(decoded.inputs)
        except OipError as error:
            return web.Response(status=400, body=encode_error(str(error)))
        self.batch_sizes.append(len(items))
        results = await asyncio.to_thread(runner.predict_batch, items)
        body, headers = encode_response(name, codec.encode_results(results), binary=decoded.binary_outputs)
        return web.Response(body=body, headers=headers)
