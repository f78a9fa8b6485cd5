"""The rule for variable names from outside Git, and how ``resolve`` applies it.

Values from the command line, the API or any other caller are data: they may never name one of
Ansible's own variables, whatever ``allowNewVariables`` says. The last tests ask the installed
ansible-core which variables it sets itself, so a new magic variable cannot slip past the list.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from reconciler.model.template import JobTemplateSpec, VariablePrompt
from reconciler.model.variables import reserved_name, resolve


def _open(*prompts: VariablePrompt) -> JobTemplateSpec:
    return JobTemplateSpec(playbook="site.yml", allow_new_variables=True, variables=list(prompts))


REFUSED = [
    # how Ansible connects, escalates and interprets: the prefix, in any case
    "ansible_connection",
    "ansible_ssh_common_args",
    "ansible_python_interpreter",
    "ansible_shell_executable",
    "ansible_become",
    "ansible_become_password",
    "Ansible_Host",
    "ANSIBLE_USER",
    # Ansible's internals
    "_ansible_no_log",
    "_private",
    # magic variables of ansible-core 2.19
    "hostvars",
    "groups",
    "group_names",
    "inventory_hostname",
    "inventory_hostname_short",
    "inventory_dir",
    "inventory_file",
    "playbook_dir",
    "play_hosts",
    "role_name",
    "role_names",
    "role_path",
    "role_uuid",
    "omit",
    "environment",
    "vars",
    # globals of Ansible's templates, and names Jinja gives a meaning
    "lookup",
    "query",
    "q",
    "now",
    "undef",
    "range",
    "dict",
    "namespace",
    "true",
    "none",
    "loop",
    "self",
    "caller",
    "varargs",
    "kwargs",
    # Python keywords
    "class",
    "True",
    "None",
    "lambda",
    # not plain identifiers
    "",
    "not-a-name",
    "1st",
    "two words",
    "dotted.name",
    "hostvars['web-1']",
    "trailing\n",
    "caf\u00e9",
]


@pytest.mark.parametrize("name", REFUSED)
def test_a_name_of_ansible_or_not_an_identifier_has_a_reason(name: str) -> None:
    reason = reserved_name(name)
    assert reason is not None
    assert "\n" not in reason


@pytest.mark.parametrize(
    "name", ["release", "batch_size", "strategy", "managed_root", "x", "A1", "release_notes"]
)
def test_an_ordinary_name_is_accepted(name: str) -> None:
    assert reserved_name(name) is None


@pytest.mark.parametrize("name", REFUSED)
def test_a_caller_cannot_give_such_a_name_even_with_allow_new_variables(name: str) -> None:
    out = resolve(_open(), caller_values={name: "x"})
    assert [(p.code, p.name) for p in out.problems] == [("var-reserved", name)]
    (problem,) = out.problems
    assert f'variable "{name}"' in problem.message or name == "trailing\n"
    assert "outside Git" in problem.message
    assert name not in out.untrusted and name not in out.trusted


def test_the_message_says_which_name_and_why_in_one_line() -> None:
    out = resolve(_open(), caller_values={"ansible_connection": "ssh", "hostvars": {}})
    messages = {p.name: p.message for p in out.problems}
    assert "ansible_" in messages["ansible_connection"]
    assert "magic variable" in messages["hostvars"]
    assert all("\n" not in m for m in messages.values())


def test_a_name_with_a_newline_is_shown_escaped() -> None:
    (problem,) = resolve(_open(), caller_values={"a\nb": "x"}).problems
    assert "\n" not in problem.message and "a\\nb" in problem.message


def test_a_declared_prompt_of_such_a_name_still_takes_no_caller_value() -> None:
    # a state applied before prompts were checked may declare one
    spec = JobTemplateSpec.model_construct(
        playbook="site.yml",
        allow_new_variables=False,
        variables=[VariablePrompt(name="ansible_become_user")],
    )
    out = resolve(spec, caller_values={"ansible_become_user": "root"})
    assert [p.code for p in out.problems] == ["var-reserved"]


def test_the_rule_holds_for_sensitive_and_declared_caller_values_too() -> None:
    spec = _open(VariablePrompt(name="token", sensitive=True))
    out = resolve(spec, caller_values={"token": "s3cret", "ansible_password": "s3cret"})
    assert [(p.code, p.name) for p in out.problems] == [("var-reserved", "ansible_password")]
    assert "ansible_password" not in out.secret_values


def test_values_from_git_keep_their_trust() -> None:
    # a schedule in Git is reviewed like the inventory, whose ansible_* host vars are normal
    out = resolve(_open(), schedule_values={"ansible_become": True})
    assert out.ok and out.trusted == {"ansible_become": True}


def test_ordinary_caller_values_are_still_untrusted_data() -> None:
    out = resolve(_open(), caller_values={"release_notes": "{{ lookup('pipe', 'id') }}"})
    assert out.ok and out.untrusted == {"release_notes": "{{ lookup('pipe', 'id') }}"}


# ---------------------------------------------------------------- against ansible-core itself


def _variables_ansible_sets(tmp: Path) -> set[str]:
    """Every variable ansible-core puts in a task's variables itself, for a task of a role."""
    from ansible import context
    from ansible.inventory.manager import InventoryManager
    from ansible.module_utils.common.collections import ImmutableDict
    from ansible.parsing.dataloader import DataLoader
    from ansible.playbook.play import Play
    from ansible.vars.hostvars import HostVars
    from ansible.vars.manager import VariableManager

    (tmp / "hosts.ini").write_text("[web]\nweb-1\n")
    (tmp / "roles" / "r" / "tasks").mkdir(parents=True)
    (tmp / "roles" / "r" / "tasks" / "main.yml").write_text("- debug: {msg: x}\n")
    saved = context.CLIARGS
    cwd = os.getcwd()
    try:
        os.chdir(tmp)
        context.CLIARGS = ImmutableDict(
            check=False,
            diff=False,
            forks=1,
            inventory=[str(tmp / "hosts.ini")],
            skip_tags=[],
            subset=None,
            tags=["all"],
            verbosity=0,
        )
        loader = DataLoader()
        loader.set_basedir(str(tmp))
        inventory = InventoryManager(loader=loader, sources=[str(tmp / "hosts.ini")])
        manager = VariableManager(loader=loader, inventory=inventory)
        HostVars(inventory=inventory, variable_manager=manager, loader=loader)
        play: Any = Play.load(
            {"hosts": "all", "gather_facts": False, "roles": ["r"]},
            variable_manager=manager,
            loader=loader,
        )
        tasks = [t for b in play.compile() for t in b.block if getattr(t, "_role", None)]
        found = manager.get_vars(
            play=play, host=inventory.get_host("web-1"), task=tasks[0], include_hostvars=True
        )
    finally:
        context.CLIARGS = saved
        os.chdir(cwd)
    return set(found)


def test_every_variable_ansible_sets_itself_is_refused(tmp_path: Path) -> None:
    names = _variables_ansible_sets(tmp_path)
    assert {"hostvars", "groups", "inventory_hostname", "role_path", "vars"} <= names
    assert sorted(n for n in names if reserved_name(n) is None) == []


def test_every_global_of_ansible_s_templates_is_refused() -> None:
    from ansible.playbook import Play
    from ansible.playbook.block import Block
    from ansible.playbook.role import Role
    from ansible.playbook.task import Task
    from ansible.vars.reserved import get_reserved_names

    # the reserved names are the playbook keywords (never read from variables) and the globals
    # of Ansible's templates, which a variable of the same name would shadow

    keywords = {n for cls in (Play, Role, Block, Task) for n in cls.fattributes}
    keywords |= {"local_action", "with_"}
    template_globals = get_reserved_names() - keywords
    assert {"lookup", "omit", "query"} <= template_globals
    assert sorted(n for n in template_globals if reserved_name(n) is None) == []
