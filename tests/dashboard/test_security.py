"""The dashboard's sign-in and cross-site protection over real HTTP against the real ``serve``
of this suite: a POST without its token, from another origin or with a read key is refused;
the cookie never drives the JSON API; keys never reach a page or the log."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request

from reconciler.api.dashboard.session import COOKIE

from .conftest import Site


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_open = urllib.request.build_opener(_NoRedirect).open


def _call(
    site: Site,
    path: str,
    key: str | None = None,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(
        site.url + path,
        data=None if form is None else urllib.parse.urlencode(form).encode(),
        headers={**({"Cookie": f"{COOKIE}={key}"} if key else {}), **(headers or {})},
    )
    try:
        with _open(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def _csrf(site: Site, key: str) -> str:
    status, _, html = _call(site, "/approvals", key)
    assert status == 200
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert m, html
    return m.group(1)


def test_a_post_without_its_token_or_from_another_origin_is_refused(site: Site) -> None:
    own = {"Origin": site.url}
    token = _csrf(site, site.approve_key)
    status, _, html = _call(site, "/approvals/nope/approve", site.approve_key, {}, own)
    assert status == 403 and "token" in html
    status, _, _ = _call(site, "/approvals/nope/approve", site.approve_key, {"csrf": "0" * 64}, own)
    assert status == 403
    status, _, _ = _call(
        site,
        "/approvals/nope/approve",
        site.approve_key,
        {"csrf": token},
        {"Origin": "http://evil.example"},
    )
    assert status == 403
    # the right token from the right origin reaches the decision (no such schedule: 409)
    status, _, html = _call(site, "/approvals/nope/approve", site.approve_key, {"csrf": token}, own)
    assert status == 409 and "no schedule" in html
    # another session's token is not this one's
    assert _csrf(site, site.read_key) != token


def test_a_read_key_may_look_but_not_act(site: Site) -> None:
    token = _csrf(site, site.read_key)
    status, _, html = _call(
        site, "/approvals/deploy-web/deny", site.read_key, {"csrf": token}, {"Origin": site.url}
    )
    assert status == 403 and "may only look" in html
    status, _, html = _call(site, "/approvals?all=1", site.read_key)
    assert status == 200 and "may only look" in html and "disabled" in html


def test_the_cookie_signs_in_the_dashboard_only_never_the_json_api(site: Site) -> None:
    status, _, _ = _call(site, "/api/status", site.read_key)
    assert status == 401
    status, _, _ = _call(site, "/runs", site.read_key)
    assert status == 200


def test_sign_in_sets_a_strict_cookie_a_bad_key_sets_none_and_keys_stay_out_of_pages(
    site: Site,
) -> None:
    status, headers, _ = _call(site, f"/?key={site.read_key}")
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; over https it is Secure
    status, headers, html = _call(site, "/?key=rk_not-a-key")
    assert status == 401 and "set-cookie" not in {k.lower() for k in headers}
    assert "rk_not-a-key" not in html
    status, headers, html = _call(site, "/", site.read_key)
    assert status == 200 and site.read_key not in html
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    # sign-out with a token clears the cookie; a foreign redirect target is ignored
    status, headers, _ = _call(
        site, "/signin", None, {"key": site.read_key, "next": "//evil.example/x"}
    )
    assert status == 303 and headers["location"] == "/"
    log = site.serve.log.read_text()
    assert site.read_key not in log and site.approve_key not in log
    assert "GET / 303" in log  # the request was logged, by its path only


def test_without_javascript_a_running_run_page_refreshes_itself_and_the_log_comes_in_parts(
    site: Site,
) -> None:
    import json

    out = json.loads(site.cli("run", "ping", "--server", "db-1", "--format", "json"))
    run_id = out["run"]["id"] if "run" in out else out["id"]
    status, _, html = _call(site, f"/runs/{run_id}", site.read_key)
    assert status == 200
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in html
    # the fragment the script polls: what was added since an offset, and whether it is over
    offset, text, final = 0, "", False
    for _ in range(100):
        status, _, body = _call(site, f"/runs/{run_id}/log?offset={offset}", site.read_key)
        assert status == 200
        part = json.loads(body)
        assert part["next_offset"] >= offset
        text += part["text"]
        offset, final = part["next_offset"], part["final"]
        if final:
            break
        time.sleep(0.2)
    assert final and "step 1 of 5" in text and "step 5 of 5" in text
    assert text.count("step 3 of 5") == 1  # each part once: nothing repeated or lost
    status, _, html = _call(site, f"/runs/{run_id}", site.read_key)
    assert "http-equiv" not in html  # a finished run's page stays put
    status, _, _ = _call(site, f"/runs/{run_id}/log?offset=0")
    assert status == 401  # the fragment needs the session too
