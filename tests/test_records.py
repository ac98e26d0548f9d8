"""Sample ids stay what released data carries: SHA-1 of the pair's place and content."""

from __future__ import annotations

import hashlib

from danqing.records import sample_id, sample_ids


def test_ids_are_sha1_of_place_and_content():
    warc = "crawl-data/CC-MAIN-2025-47/segments/1/warc/CC-MAIN-20251107-00001.warc.gz"
    urls = ["http://img.test/a.jpg", "http://img.test/图片.jpg", ""]
    alts = ["纯棉短袖T恤", "alt\twith tab", ""]
    expected = [hashlib.sha1(f"{warc}\t1234\t{u}\t{a}".encode()).hexdigest()[:16]
                for u, a in zip(urls, alts, strict=True)]
    assert sample_ids(warc, 1234, urls, alts) == expected
    assert [sample_id(warc, 1234, u, a) for u, a in zip(urls, alts, strict=True)] == expected
    assert sample_ids(warc, 1235, urls, alts) != expected  # the record's place is part of the id
