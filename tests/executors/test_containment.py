"""The run-time containment check: nothing in a run's copy of the repository leads outside it.

Real directories and symlinks, no ansible-playbook: :func:`escape` must name the first path that
leads out, and let everything that stays inside through.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.executors.playbooks import escape

#: a play whose first task follows
TASK = "- hosts: all\n  tasks:\n    - "
PLAY = "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "evil.yml").write_text(PLAY)
    (out / "tasks.yml").write_text("- ansible.builtin.ping:\n")
    (out / "vars.yml").write_text("x: 1\n")
    (out / "role" / "tasks").mkdir(parents=True)
    (out / "role" / "tasks" / "main.yml").write_text("- ansible.builtin.ping:\n")
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "playbooks" / "common").mkdir(parents=True)
    (root / "playbooks" / "common" / "hello.yml").write_text(PLAY)
    (root / "playbooks" / "tasks.yml").write_text("- ansible.builtin.ping:\n")
    (root / "playbooks" / "site.yml").write_text("- import_playbook: common/hello.yml\n")
    (root / "roles" / "web" / "tasks").mkdir(parents=True)
    (root / "roles" / "web" / "tasks" / "main.yml").write_text("- ansible.builtin.ping:\n")
    return root


def _site(project: Path, text: str) -> None:
    (project / "playbooks" / "site.yml").write_text(text)


def test_a_project_whose_symlinks_and_imports_stay_inside_passes(project: Path) -> None:
    os.symlink("site.yml", project / "playbooks" / "alias.yml")
    os.symlink("../roles", project / "playbooks" / "roles")
    os.symlink("gone.yml", project / "playbooks" / "dangling.yml")  # dangling, but inside
    os.symlink("loop-b", project / "loop-a")
    os.symlink("loop-a", project / "loop-b")
    _site(
        project,
        "- import_playbook: common/hello.yml\n"
        "- hosts: all\n"
        "  vars_files: [../roles/web/tasks/main.yml]\n"
        "  roles: [web]\n"
        "  tasks:\n"
        "    - ansible.builtin.import_tasks: tasks.yml\n"
        "    - ansible.builtin.include_tasks: {file: tasks.yml}\n"
        "    - ansible.builtin.include_vars: ../roles/web/tasks/main.yml\n",
    )
    assert escape(str(project), "playbooks/site.yml") is None
    assert escape(str(project), "playbooks/alias.yml") is None


def test_a_symlinked_directory_leading_out_is_named(project: Path, outside: Path) -> None:
    os.symlink(outside, project / "playbooks" / "lib")
    assert escape(str(project), "playbooks/site.yml") == (
        f'symlink "playbooks/lib" points outside the repository ("{outside}")'
    )


def test_a_symlink_anywhere_leading_out_is_named_even_when_nothing_imports_it(
    project: Path,
) -> None:
    (project / "files").mkdir()
    os.symlink("/etc/passwd", project / "files" / "passwd")
    message = escape(str(project), "playbooks/site.yml")
    assert message == 'symlink "files/passwd" points outside the repository ("/etc/passwd")'


def test_a_dangling_symlink_to_a_path_outside_is_named(project: Path) -> None:
    os.symlink("/nonexistent/ansible.cfg", project / "ansible.cfg")
    message = escape(str(project), "playbooks/site.yml")
    assert message is not None and '"ansible.cfg"' in message


def test_a_relative_symlink_climbing_out_is_named(project: Path) -> None:
    os.symlink("../../outside/evil.yml", project / "playbooks" / "up.yml")
    message = escape(str(project), "playbooks/site.yml")
    assert message is not None and '"playbooks/up.yml"' in message


@pytest.mark.parametrize(
    ("play", "what"),
    [
        ("- import_playbook: {out}/evil.yml\n", "import_playbook"),
        ("- ansible.builtin.import_playbook: ../../outside/evil.yml\n", "import_playbook"),
        (TASK + "import_tasks: {out}/tasks.yml\n", "include"),
        (
            TASK + "ansible.builtin.include_tasks: {{file: {out}/tasks.yml}}\n",
            "include",
        ),
        (
            TASK + "block:\n        - include_tasks: ../../outside/tasks.yml\n",
            "include",
        ),
        ("- hosts: all\n  roles: [{out}/role]\n", "role"),
        (TASK + "include_role: {{name: {out}/role}}\n", "role"),
        ("- hosts: all\n  vars_files: [{out}/vars.yml]\n", "vars_files"),
        ("- hosts: all\n  vars_files: [[missing.yml, {out}/vars.yml]]\n", "vars_files"),
        (TASK + "include_vars: {out}/vars.yml\n", "include_vars"),
        (
            TASK + "ansible.builtin.include_vars: {{file: {out}/vars.yml}}\n",
            "include_vars",
        ),
    ],
)
def test_a_literal_import_or_include_leading_out_is_named_with_where_it_is(
    project: Path, outside: Path, play: str, what: str
) -> None:
    _site(project, play.format(out=outside))
    message = escape(str(project), "playbooks/site.yml")
    assert message is not None
    assert message.startswith(f"playbooks/site.yml: {what} "), message
    assert str(outside) in message and "leads outside the repository" in message


def test_an_import_leading_out_from_an_imported_file_is_found(project: Path, outside: Path) -> None:
    (project / "playbooks" / "common" / "hello.yml").write_text(
        f"- import_playbook: {outside}/evil.yml\n"
    )
    message = escape(str(project), "playbooks/site.yml")
    assert message is not None and message.startswith("playbooks/common/hello.yml: ")


def test_a_templated_path_is_not_followed(project: Path) -> None:
    _site(project, '- import_playbook: "{{ where }}/evil.yml"\n')
    assert escape(str(project), "playbooks/site.yml") is None


def test_a_playbook_path_leading_out_is_named(project: Path) -> None:
    message = escape(str(project), "../outside/evil.yml")
    assert message is not None and "../outside/evil.yml" in message


def test_a_name_with_a_newline_or_undecodable_bytes_stays_on_one_line(project: Path) -> None:
    os.symlink("/etc/passwd", os.fsencode(project) + b"/bad\nname\xff")
    message = escape(str(project), "playbooks/site.yml")
    assert message is not None and "\n" not in message and "bad\\nname" in message
    message.encode("utf-8")  # storable and printable: no lone surrogate left
