"""The bundled sample crawl and its image server (DanQing examples by DeepGlint, CC BY 4.0)."""
