"""The OpenSearch URL in messages: scheme, host and port only, whatever else the URL holds."""

from __future__ import annotations

import pytest

from cdcsync.urls import origin

SECRET = "p@ss/w?rd#1"  # noqa: S105 - a fake password with every character that ends a URL part


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://search.example.com:9200", "https://search.example.com:9200"),
        ("https://search.example.com", "https://search.example.com"),
        ("http://127.0.0.1:9200/", "http://127.0.0.1:9200"),
        ("HTTPS://Search.Example.com:443", "https://Search.Example.com:443"),
        # user:password@ with an @ in the password (the old mask showed "***@ssw0rd@host")
        ("https://admin:p@ssw0rd@host", "https://host"),
        ("https://admin:p@ssw0rd@host:9200/", "https://host:9200"),
        # a slash, a question mark or a hash in the password end the host for a URL parser
        ("https://admin:p/ssw0rd@host:9200", "https://host:9200"),
        ("https://admin:p?ss@host:9200", "https://host:9200"),
        ("https://admin:p#ss@host:9200", "https://host:9200"),
        (f"https://admin:{SECRET}@host:9200", "https://host:9200"),
        ("https://admin@host", "https://host"),
        # credentials in the query string, the path or the fragment
        ("https://host:9200/?api_key=c2VjcmV0OmtleQ==", "https://host:9200"),
        ("https://host:9200?api_key=abc&x=1", "https://host:9200"),
        ("https://host:9200/secret-path/_bulk", "https://host:9200"),
        ("https://host:9200#token=abc", "https://host:9200"),
        # IPv6 literals keep their brackets, with or without a port or a zone
        ("http://[::1]:9200", "http://[::1]:9200"),
        ("https://admin:pw@[2001:db8::7]/x", "https://[2001:db8::7]"),
        ("http://[fe80::1%25eth0]:9200", "http://[fe80::1%25eth0]:9200"),
        # a port that is no port is not shown (it could be a password missing its @)
        ("https://admin:hunter2", "https://admin"),
        ("http://host:99999", "http://host"),
        # no scheme, an odd scheme, or no host at all
        ("search.example.com:9200", "search.example.com:9200"),
        ("admin:pw@search.example.com:9200", "search.example.com:9200"),
        ("ftp://search:21", "ftp://search:21"),
        ("http://", "http://?"),
        ("https://bad host:9200", "https://?:9200"),
        ("java script://host", "?://host"),
        ("  https://host:9200  ", "https://host:9200"),
    ],
)
def test_origin_url_shows_scheme_host_and_port_only(url: str, shown: str) -> None:
    # GIVEN a URL as an operator may have typed it WHEN shown in a message
    # THEN only its scheme, host and port remain
    assert origin(url) == shown
    for secret in ("ssw0rd", "p/ss", "hunter2", "c2VjcmV0", "api_key", "token", "pw", "secret-path"):
        assert secret not in origin(url)
