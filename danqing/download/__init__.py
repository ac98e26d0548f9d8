"""Stage 3's parts, one concern each: fetcher (async HTTP), hosts (per-host budget, pauses, breaker),
coord (the Redis store workers share them through), dns (resolver cache), guard (SSRF), robots
(opt-outs), decode (safe decode, resize, hashes), visual (the visual filters decode applies), pool +
worker (decode processes fed over pipes; frames: what goes over them), cache (per-shard resume).
The stage itself, danqing.stages.download, wires them and writes the WebDataset tar.
"""
