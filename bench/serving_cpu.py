"""Where the CPU of a serving round goes: CPU seconds of the Ray cluster's processes, by role.

``bench/serving.py`` takes a snapshot before and after each round; the difference, less what each role
uses while idle, over the round's images, is the CPU each stage costs per image (the gateways report
their own). The roles come from the
process titles Ray gives its actors (``ray::ServeReplica:<app>:<deployment>``, ``ray::ProxyActor``, ...).
Not a test: figures depend on the machine.
"""

from __future__ import annotations

from collections.abc import Mapping

import psutil

__all__ = ["cpu_by_role", "idle_per_s", "per_image_ms", "ray_rss_mib"]


def _role(cmdline: str) -> str | None:
    if "ray::ServeReplica:" in cmdline:
        # ray::ServeReplica:<app>:<deployment>
        return cmdline.split("ray::ServeReplica:", 1)[1].split()[0]
    if "ray::ProxyActor" in cmdline:
        return "proxy"
    if "ray::ServeController" in cmdline:
        return "controller"
    if "raylet" in cmdline or "gcs_server" in cmdline or "ray::" in cmdline or "/ray/" in cmdline:
        return "ray (other)"
    return None


def _ray_processes() -> list[tuple[str, psutil.Process]]:
    """The Ray processes this bench started (its descendants), not another cluster on the machine."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            role = _role(" ".join(process.cmdline()))
        except psutil.Error:
            continue
        if role is not None:
            found.append((role, process))
    return found


def cpu_by_role() -> dict[str, float]:
    """CPU seconds (user + system) each role's processes have used so far."""
    totals: dict[str, float] = {}
    for role, process in _ray_processes():
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        totals[role] = totals.get(role, 0.0) + times.user + times.system
    return totals


def ray_rss_mib() -> float:
    total = 0
    for _role_name, process in _ray_processes():
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total / (1 << 20)


def per_image_ms(
    before: Mapping[str, float],
    after: Mapping[str, float],
    images: int,
    *,
    wall_s: float,
    idle_per_s: Mapping[str, float],
) -> dict[str, float]:
    """CPU milliseconds per image by role over a round, less what the role uses while idle (health
    checks, metrics, the controller's loop), for the roles that used any."""
    costs = {}
    for role in after:
        busy = after[role] - before.get(role, 0.0) - idle_per_s.get(role, 0.0) * wall_s
        if abs(busy) >= 0.02:
            costs[role] = round(1000 * busy / images, 1)
    return costs


def idle_per_s(seconds: float = 5.0) -> dict[str, float]:
    """CPU seconds per second each role uses with no request in flight."""
    import time

    before = cpu_by_role()
    time.sleep(seconds)
    after = cpu_by_role()
    return {role: (after[role] - before.get(role, 0.0)) / seconds for role in after}
