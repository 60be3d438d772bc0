"""city_platform.allowlist: normalized URL prefixes against SSRF, one test per spelling trick,
and the remote @context fetch refusing a redirect out of the list (real HTTP servers on [::1])."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
from collections.abc import Iterator
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from city_platform.allowlist import EndpointAllowList, normalize
from city_platform.errors import BadRequestData, LdContextNotAvailable
from city_platform.ldcontext import ContextResolver

ALLOW = EndpointAllowList(["http://[::1]:8081/notify", "mqtts://broker.city:8883/city/"])


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:8081/notify",
        "http://[::1]:8081/notify/",
        "http://[::1]:8081/notify/more?x=1#f",
        "HTTP://[::1]:8081/notify",  # scheme case (RFC 3986 6.2.2.1)
        "http://[0:0:0:0:0:0:0:1]:8081/notify",  # IPv6 spelled out
        "http://[::0001]:8081/notify",  # leading zeros
        "http://[::1]:08081/notify",  # a leading zero in the port (httpx reads 8081 too)
        "http://[::1]:8081/%6Eotify",  # percent-encoded unreserved character (6.2.2.2)
        "http://[::1]:8081/other/../notify",  # dot segments removed (5.2.4)
        "mqtts://broker.city/city/lights",  # the default port made explicit (6.2.3)
        "mqtts://BROKER.CITY.:8883/city/x",  # host case and trailing dot
        "mqtts://user:pw@broker.city:8883/city/x",  # MQTT binding userinfo, host unchanged
    ],
)
def test_allowed_spellings(url: str) -> None:
    """The same origin and path, spelled in any equivalent way, is allowed."""
    assert ALLOW.permits(url)


@pytest.mark.parametrize(
    ("url", "trick"),
    [
        ("http://[::1]:8081@evil.example/notify", "userinfo: the host is evil.example"),
        ("http://evil.example/notify", "other host"),
        ("http://[::1]evil.example:8081/notify", "junk after the IPv6 literal (found by fuzzing)"),
        ("http://[::1]:8081:8081/notify", "two ports"),
        ("http://[::1]:8082/notify", "other port"),
        ("http://[::1]/notify", "default port 80 is not 8081"),
        ("https://[::1]:8081/notify", "other scheme"),
        ("http://[::1]:8081/notifyx", "not on a segment boundary"),
        ("http://[::1]:8081/notify/../admin", "dot segments climb out"),
        ("http://[::1]:8081/notify/%2e%2e/admin", "encoded dot segments climb out"),
        ("http://[::1]:8081/notify/..%2Fadmin", "encoded slash: servers disagree"),
        ("http://[::1]:8081\\@evil.example/notify", "backslash: parsers disagree"),
        ("http://[::1]:8081/no tify", "white space"),
        ("http://[::1]:8081/notify\n", "control character"),
        ("http://[::2]:8081/notify", "other IPv6 address"),
        ("http://[::ffff:127.0.0.1]:8081/notify", "IPv4-mapped is another address"),
        ("http://0:8081/notify", "0 is not [::1]"),
        ("ftp://[::1]:8081/notify", "scheme not allowed at all"),
        ("http://[::1]:99999/notify", "port out of range"),
        ("//[::1]:8081/notify", "no scheme"),
        ("mqtts://broker.city:8883/cityx", "topic prefix boundary"),
        ("mqtts://broker.city.evil:8883/city/x", "a suffix on the host"),
    ],
)
def test_refused_spellings(url: str, trick: str) -> None:
    """Each trick that would reach another origin or path is refused."""
    assert not ALLOW.permits(url), trick


def test_path_boundary_of_a_prefix_with_trailing_slash() -> None:
    """http://h/notify/ covers http://h/notify/x and http://h/notify itself."""
    allow = EndpointAllowList(["http://[::1]:9/notify/"])
    assert allow.permits("http://[::1]:9/notify")
    assert allow.permits("http://[::1]:9/notify/a")
    assert not allow.permits("http://[::1]:9/notifyother")


def test_origin_prefix_covers_every_path() -> None:
    allow = EndpointAllowList(["http://[::1]:9"])
    assert allow.permits("http://[::1]:9/")
    assert allow.permits("http://[::1]:9/any/path")
    assert not allow.permits("http://[::1]:10/")


def test_empty_list_allows_everything() -> None:
    """No --allow-endpoint: today's behaviour, every URL."""
    allow = EndpointAllowList()
    assert not allow
    assert allow.permits("http://169.254.169.254/latest/meta-data")
    allow.check("http://anything/", "endpoint")  # no error


def test_check_names_the_option() -> None:
    with pytest.raises(BadRequestData, match="--allow-endpoint"):
        ALLOW.check("http://evil.example/", "notification.endpoint.uri")
    ALLOW.check(42, "notification.endpoint.uri")  # not a URL: left to the model's validation


def test_bad_prefix_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="--allow-endpoint"):
        EndpointAllowList(["not a url"])


def test_normalize_parts() -> None:
    origin = normalize("HTTP://User@[0::1]/a/./b/../c")
    assert (origin.scheme, origin.host, origin.port, origin.path) == ("http", "::1", 80, "/a/c")


def test_subscription_and_registration_bodies() -> None:
    """The endpoint inside a subscription and a registration document is what is checked."""
    bad = {"notification": {"endpoint": {"uri": "http://evil.example/"}}}
    with pytest.raises(BadRequestData, match=r"notification\.endpoint\.uri"):
        ALLOW.check_subscription(bad)
    with pytest.raises(BadRequestData, match="endpoint"):
        ALLOW.check_registration({"endpoint": "http://evil.example/"})
    ALLOW.check_subscription({"description": "no endpoint in this PATCH"})
    ALLOW.check_subscription({"notification": {"endpoint": {"uri": "http://[::1]:8081/notify"}}})


class _Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True


def _serve(location: str | None) -> tuple[_Server, str]:
    """A context server: redirects to ``location``, or serves a small @context."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if location is not None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b'{"@context": {"Thing": "https://example.org/Thing"}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/ld+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("::1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://[::1]:{server.server_address[1]}"


@pytest.fixture
def servers() -> Iterator[tuple[str, str]]:
    """An outside server with a @context, and an allowed one that redirects to it."""
    outside, outside_url = _serve(None)
    inside, inside_url = _serve(outside_url + "/ctx.jsonld")
    yield inside_url, outside_url
    for s in (inside, outside):
        s.shutdown()
        s.server_close()


async def test_remote_context_outside_the_list_is_not_fetched(servers: tuple[str, str]) -> None:
    """A remote @context URL outside the list: LdContextNotAvailable naming the list."""
    inside, outside = servers
    resolver = ContextResolver(allow_list=EndpointAllowList([inside + "/"]))
    with pytest.raises(LdContextNotAvailable, match="allow-list"):
        await resolver.resolve(outside + "/ctx.jsonld")


async def test_redirect_out_of_the_list_is_refused(servers: tuple[str, str]) -> None:
    """An allowed URL that redirects outside the list is refused, not followed."""
    inside, outside = servers
    resolver = ContextResolver(allow_list=EndpointAllowList([inside + "/"]))
    with pytest.raises(LdContextNotAvailable, match="redirects"):
        await resolver.resolve(inside + "/ctx.jsonld")
    # the same redirect with both servers allowed is followed
    both = ContextResolver(allow_list=EndpointAllowList([inside + "/", outside + "/"]))
    ctx = await both.resolve(inside + "/ctx.jsonld")
    assert ctx.expand("Thing") == "https://example.org/Thing"


# -- property: whatever the list permits, httpx sends to the allowed origin ----------------

_JUNK = st.lists(
    st.sampled_from(
        ["@", "evil.example", "/", "..", ".", "%2e", "%2F", "%40", "%6E", "\\", "#", "?", ":",
         "[", "]", "x", "user:pw@", "%00", " ", "\t", ":80", "/notify"]
    ),
    max_size=2,
).map("".join)  # fmt: skip
_URLS = st.tuples(
    st.sampled_from(["http://", "HTTP://", "https://", "mqtt://"]),
    _JUNK,
    st.sampled_from(["[::1]", "[0::1]", "[::2]", "evil.example"]),
    _JUNK,
    st.sampled_from([":8081", ":80", "", ":08081"]),
    _JUNK,
    st.sampled_from(["/notify", "/notify/", "/NOTIFY", "/notify/a", "/%6Eotify", ""]),
    _JUNK,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(_URLS)
def test_permitted_urls_reach_the_allowed_origin(url: str) -> None:
    """Fuzzed URLs around the prefix: permits() never raises, and whatever it permits, httpx
    (the notifier's client) parses to host ::1, port 8081 and a path under /notify."""
    if not ALLOW.permits(url):
        return
    parsed = httpx.URL(url)
    assert ipaddress.ip_address(parsed.host) == ipaddress.ip_address("::1"), url
    assert parsed.port == 8081, url
    path = normalize(url).path
    assert path == "/notify" or path.startswith("/notify/"), url
    decoded = unquote(parsed.path)
    assert decoded == "/notify" or decoded.startswith("/notify/"), url
    assert "/../" not in decoded + "/", url
