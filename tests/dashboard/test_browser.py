"""The dashboard in a real browser (headless Chromium from Debian's packages, selenium) against
a real ``serve``: sign in, read the pages, follow a live log, act on the approval queue.
Every page is saved as a screenshot to ``test-artifacts/dashboard/``.

The tests of this module share one daemon and one browser and run in order (sign-in first).
"""

from __future__ import annotations

import json
import re
from typing import Any

from selenium.webdriver.common.by import By

from tests.gitutil import git

from .conftest import Site, shot, wait_for


def _text(driver: Any) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def test_a_key_in_the_address_signs_in_with_a_strict_cookie_and_leaves_the_address_bar(
    site: Site, browser: Any
) -> None:
    browser.get(site.url + "/runs")
    assert "/signin" in browser.current_url  # not signed in: the sign-in form, then back
    shot(browser, "signin")
    browser.get(f"{site.url}/?key={site.read_key}")
    assert browser.current_url == site.url + "/"
    assert site.read_key not in browser.page_source
    (cookie,) = browser.get_cookies()
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/" and cookie["secure"] is False  # plain http on 127.0.0.1


def test_the_upcoming_list_shows_states_fire_times_with_offsets_and_hides_system_jobs(
    site: Site, browser: Any
) -> None:
    browser.get(site.url + "/")
    body = _text(browser)
    for name in ("nightly-backup", "report-quarter-hourly", "weekly-ny-audit", "deploy-web"):
        assert name in body
    # Europe/Berlin in December: +01:00; the New York schedule: -05:00; relative times
    assert re.search(r"\d{4}-\d\d-\d\d 02:00:00 \+01:00", body), body
    assert re.search(r" 06:00:00 -05:00", body), body
    assert re.search(r"in \d+ (s|min|h|d)", body)
    assert "awaiting-approval" in body and "paused" in body
    assert "System jobs" not in body
    shot(browser, "upcoming")
    browser.find_element(By.NAME, "system").click()
    browser.find_element(By.CSS_SELECTOR, "form.row button[type=submit]").click()
    wait_for(lambda: "System jobs of the daemon" in _text(browser), 10, "the system jobs")
    assert "reconcile" in _text(browser)
    shot(browser, "upcoming-system")


def test_the_timeline_draws_a_row_per_schedule_and_a_mark_per_fire(
    site: Site, browser: Any
) -> None:
    browser.get(site.url + "/timeline")
    svg = browser.find_element(By.CSS_SELECTOR, "svg.timeline")
    lanes = [t.text for t in svg.find_elements(By.CSS_SELECTOR, "text.lane")]
    assert "report-quarter-hourly" in lanes and "nightly-backup" in lanes
    assert "paused-cleanup" not in lanes  # only active schedules fire
    marks = svg.find_elements(By.CSS_SELECTOR, "rect.fire")
    assert len(marks) >= 60  # every 15 min: the first 60 marks, then a band to the end
    assert svg.find_elements(By.CSS_SELECTOR, "rect.dense")
    shot(browser, "timeline-24h")
    browser.find_element(By.LINK_TEXT, "next 7 days").click()
    wait_for(lambda: "window=7d" in browser.current_url, 10, "the 7-day timeline")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.timeline rect.fire")
    shot(browser, "timeline-7d")


def test_a_run_page_follows_its_log_live_until_the_run_ends(site: Site, browser: Any) -> None:
    out = site.cli("run", "ping", "--server", "web-1", "--format", "json")
    run_id = json.loads(out)["run"]["id"] if "run" in json.loads(out) else json.loads(out)["id"]
    browser.get(f"{site.url}/runs/{run_id}")
    log = browser.find_element(By.ID, "log")
    # lines arrive while the page is open (the fake run writes one every 2/3 s for 4 s)
    wait_for(lambda: "step 1 of 5" in log.text, 15, "the first log line")
    assert "step 5 of 5" not in log.text
    assert "running" in _text(browser) or "queued" in _text(browser)
    shot(browser, "run-live")
    wait_for(lambda: "succeeded" in browser.find_element(By.ID, "run-status").text, 20, "the end")
    assert "step 5 of 5" in browser.find_element(By.ID, "log").text
    shot(browser, "run-finished")


def test_run_history_filters_by_status_and_trigger_and_shows_per_server_results(
    site: Site, browser: Any
) -> None:
    browser.get(site.url + "/runs?status=failed")
    body = _text(browser)
    assert "web-2: failed" in body and "web-1: ok" in body
    statuses = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "table.list td .badge")]
    assert statuses and set(statuses) == {"failed"}
    browser.get(site.url + "/runs")
    shot(browser, "runs")
    browser.get(site.url + "/runs?trigger=retry")
    assert "No run matches." in _text(browser)


def test_a_schedule_page_shows_its_ledger_with_skip_reasons_as_ranges(
    site: Site, browser: Any
) -> None:
    browser.get(site.url + "/schedules/paused-cleanup")
    wait_for(
        lambda: (browser.refresh() or True) and "paused" in _text(browser).split("Slot ledger")[-1],
        15,
        "skipped slots of the paused schedule",
    )
    body = _text(browser)
    assert "skipped" in body
    shot(browser, "schedule-ledger")
    browser.get(site.url + "/schedules/nightly-backup")
    # the description from Git is shown as text
    assert "Backs up <b>every</b> database" in _text(browser)


def test_the_drift_page_shows_each_server_with_its_state(site: Site, browser: Any) -> None:
    browser.get(site.url + "/drift")
    rows = {
        r.find_element(By.CSS_SELECTOR, "td.name").text: r.text
        for r in browser.find_elements(By.CSS_SELECTOR, "table.list tbody tr")
    }
    assert "drifted" in rows["web-1"] and "unknown" in rows["web-2"] and "in-sync" in rows["db-1"]
    shot(browser, "drift")


def test_an_approve_key_approves_from_the_queue_and_the_schedule_turns_active(
    site: Site, browser: Any
) -> None:
    browser.find_element(By.CSS_SELECTOR, "form[action='/signout'] button").click()
    wait_for(lambda: "/signin" in browser.current_url, 10, "the sign-in page")
    assert browser.get_cookies() == []
    browser.find_element(By.ID, "key").send_keys(site.approve_key)
    browser.find_element(By.CSS_SELECTOR, "section.signin button[type=submit]").click()
    wait_for(lambda: browser.current_url == site.url + "/", 10, "the signed-in dashboard")
    assert "approve as alice" in _text(browser)

    browser.get(site.url + "/approvals")
    assert "needs 1 approval" in _text(browser)
    shot(browser, "approvals")
    browser.find_element(
        By.CSS_SELECTOR, "form[action='/approvals/deploy-web/approve'] button"
    ).click()
    wait_for(lambda: "alice approved" in _text(browser), 10, "the approval's notice")
    row = browser.find_element(By.ID, "deploy-web")
    assert "active" in row.text and "1 of 1 approved" in row.text
    browser.get(site.url + "/")
    row = browser.find_element(By.XPATH, "//tr[td/a[text()='deploy-web']]")
    assert "active" in row.text and "+01:00" in row.text  # it fires now: next times shown


def test_a_past_due_at_job_asks_for_confirmation_before_it_runs_at_once(
    site: Site, browser: Any
) -> None:
    browser.get(site.url + "/approvals")
    row = browser.find_element(By.ID, "deploy-hotfix")
    assert "past due" in row.text
    row.find_element(By.CSS_SELECTOR, "form[action$='/approve'] button").click()
    wait_for(lambda: "confirm=deploy-hotfix" in browser.current_url, 10, "the confirmation")
    row = browser.find_element(By.ID, "deploy-hotfix")
    assert "awaiting-approval" in row.text and "right away" in row.text
    shot(browser, "approvals-confirm")
    row.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait_for(lambda: "alice approved" in _text(browser), 10, "the forced approval")
    assert "active" in browser.find_element(By.ID, "deploy-hotfix").text
    # the dry run of a schedule is a simulate run, shown on its run page
    browser.find_element(
        By.CSS_SELECTOR, "form[action='/approvals/deploy-web/dry-run'] button"
    ).click()
    wait_for(lambda: "/runs/" in browser.current_url, 10, "the dry run's page")
    assert "simulate" in _text(browser) and "deploy" in _text(browser)


def test_a_commit_that_fails_validation_shows_as_stalled_with_file_and_line(
    site: Site, browser: Any
) -> None:
    browser.get(f"{site.url}/?key={site.read_key}")
    bad = site.repo / "schedules" / "broken.yaml"
    bad.write_text(
        "apiVersion: reconciler/v1\nkind: Schedule\nmetadata: {name: broken}\nspec:\n"
        "  template: ping\n  owner: ops\n  when: {daily: {at: '03:00'}}\n  colour: red\n"
    )
    git(site.repo, "add", "-A")
    git(site.repo, "commit", "-qm", "a schedule with an unknown field")
    wait_for(
        lambda: (browser.get(site.url + "/status") or True) and "was not applied" in _text(browser),
        20,
        "the stalled commit on the status page",
    )
    body = _text(browser)
    assert re.search(r"schedules/broken\.yaml:8:\d+: error\[", body), body
    shot(browser, "status")
