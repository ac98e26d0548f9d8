"""Dedup at crawl scale: the rules that decide from pairs, and the partitions that find them."""
