"""Models served once for every gateway: the Open Inference Protocol, remote runners, the Ray Serve app.

``oip`` is the wire format; ``codecs`` splits each model into the part a gateway runs (images into
tensors, tensors into results) and the part the service runs; ``remote`` holds the runners a gateway's
registry hands out when ``INFERENCE_URL`` is set; ``app`` is the Ray Serve application (imported only
by ``lumi serve-models``: gateways need no Ray).
"""
