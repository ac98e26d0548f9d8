"""Stage 3's parts, one concern each: fetcher (async HTTP), guard (SSRF), robots (opt-outs),
decode (safe decode, resize, hashes), pool + worker (decode processes fed over pipes),
cache (per-shard resume).
The stage itself, danqing.stages.download, wires them and writes the WebDataset tar.
"""
