"""Ansible inventories (INI and YAML) as hopcap inventories.

Only hosts with `hopcap_role` are on the path; hosts reached through `hopcap_jump`, or
named by `hopcap_repro_on`, are kept as well; every other host of the Ansible inventory is
ignored (its variables are not even validated, except misspelled `hopcap_*` ones).

Variable precedence follows Ansible: `all` < parent groups < child groups (by depth, then
`ansible_group_priority`, then name) < host variables.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from hopcap.errors import Problem
from hopcap.inventory._build import (
    HOST_VALIDATORS,
    SECRET_KEY_PROBLEM,
    Bad,
    Builder,
    HostSpec,
    Setting,
    v_connection,
    v_filter,
    v_path_list,
    v_run,
    v_target,
    v_window,
)
from hopcap.inventory._tree import Map, Scalar, Seq, TNode, describe
from hopcap.inventory.values import did_you_mean, suggest
from hopcap.model import Inventory

HOST_VARS: dict[str, str] = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "identity",
    "ansible_private_key_file": "identity",
    "ansible_become": "sudo",
    "hopcap_role": "role",
    "hopcap_capture": "capture",
    "hopcap_jump": "jump",
    "hopcap_known_hosts": "known_hosts",
    "ansible_connection": "connection",
    "hopcap_kind": "kind",
    "hopcap_password_env": "password_env",
}
# Ansible's names of the connections hopcap has (`smart` and `paramiko` are SSH too)
CONNECTION_ALIASES = {
    "ssh": "ssh",
    "smart": "ssh",
    "paramiko": "ssh",
    "paramiko_ssh": "ssh",
    "local": "local",
}
# passwords written in the inventory: refused where hopcap would use them
SECRET_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
TOP_VARS = {
    "hopcap_path": ("path", v_path_list),
    "hopcap_target": ("target", v_target),
    "hopcap_filter": ("filter", v_filter),
    "hopcap_window": ("window", v_window),
    "hopcap_repro_on": ("repro_on", HOST_VALIDATORS["jump"]),
    "hopcap_repro_run": ("repro_run", v_run),
}
HOPCAP_VARS = sorted([k for k in HOST_VARS if k.startswith("hopcap_")] + list(TOP_VARS))
GROUP_KEYS = ("hosts", "vars", "children")
MAX_HOSTS = 100_000

Var = tuple[Scalar, TNode]  # (key as written, value)


@dataclass
class Group:
    name: str
    node: TNode | None = None
    vars: dict[str, Var] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


@dataclass
class AHost:
    name: str
    node: TNode
    vars: dict[str, Var] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)


@dataclass
class AInventory:
    groups: dict[str, Group] = field(default_factory=dict)
    hosts: dict[str, AHost] = field(default_factory=dict)

    def group(self, name: str, node: TNode | None = None) -> Group:
        g = self.groups.get(name)
        if g is None:
            g = self.groups[name] = Group(name, node)
            if name != "all":
                g.parents.append("all")
        elif g.node is None:
            g.node = node
        return g

    def add_host(self, name: str, node: TNode, group: str) -> AHost:
        h = self.hosts.get(name)
        if h is None:
            h = self.hosts[name] = AHost(name, node)
        if group not in h.groups:
            h.groups.append(group)
            self.group(group).hosts.append(name)
        return h

    def link(self, parent: str, child: str, node: TNode | None) -> None:
        c = self.group(child, node)
        self.group(parent)
        if "all" in c.parents and parent != "all":
            c.parents.remove("all")
        if parent not in c.parents:
            c.parents.append(parent)


def v_ansible_connection(node: TNode, coerce: bool) -> str:
    """`ansible_connection`: Ansible's plugin names (`ansible.builtin.local`, `smart`)."""
    if isinstance(node, Scalar) and isinstance(node.value, str):
        name = node.value.strip().removeprefix("ansible.builtin.")
        if name in CONNECTION_ALIASES:
            return CONNECTION_ALIASES[name]
        if name:
            raise Bad(
                (
                    None,
                    f"connection '{node.value.strip()}' is not one hopcap has (it reaches "
                    f"hosts with: {', '.join(CONNECTION_ALIASES)})",
                )
            )
    return v_connection(node, coerce)


# --------------------------------------------------------------------------- host patterns

_RANGE = re.compile(r"\[([0-9]+|[a-zA-Z]):([0-9]+|[a-zA-Z])(?::([0-9]+))?\]")


def expand_pattern(pattern: str) -> list[str]:
    """Ansible host ranges: `web[01:03].example` -> web01..web03; `db-[a:c]`. ValueError."""
    m = _RANGE.search(pattern)
    if m is None:
        return [pattern]
    lo, hi, step_s = m.group(1), m.group(2), m.group(3)
    step = int(step_s) if step_s else 1
    if step < 1:
        raise ValueError(f"host range '{m.group(0)}' has a zero step")
    head, tail = pattern[: m.start()], pattern[m.end() :]
    if lo.isdigit() != hi.isdigit():
        raise ValueError(f"host range '{m.group(0)}' mixes letters and numbers")
    if lo.isdigit():
        a, z = int(lo), int(hi)
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        if z < a:
            raise ValueError(f"host range '{m.group(0)}' runs backwards")
        if (z - a) // step + 1 > MAX_HOSTS:
            raise ValueError(f"host range '{m.group(0)}' is too large")
        items = [str(i).zfill(width) for i in range(a, z + 1, step)]
    else:
        if ord(hi) < ord(lo):
            raise ValueError(f"host range '{m.group(0)}' runs backwards")
        items = [chr(c) for c in range(ord(lo), ord(hi) + 1, step)]
    out: list[str] = []
    for item in items:
        out.extend(expand_pattern(head + item + tail))
        if len(out) > MAX_HOSTS:
            raise ValueError(f"host pattern '{pattern}' expands to too many hosts")
    return out


def _split_port(pattern: str) -> tuple[str, str | None]:
    """`host:2222` -> ("host", "2222"); ranges (`web[1:3]`) and IPv6 keep their colons."""
    outside = re.sub(r"\[[^\]]*\]", "", pattern)
    if outside.count(":") == 1:
        at = pattern.rfind(":")
        return pattern[:at], pattern[at + 1 :]
    return pattern, None


# --------------------------------------------------------------------------- INI


def _ini_value(text: str, line: int, col: int, literal: bool) -> TNode:
    """A host-line value is a Python literal when it parses as one (as Ansible does);
    a `[group:vars]` value is a string."""
    if literal and len(text) < 10_000:
        try:
            v = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            v = text
        if isinstance(v, list | tuple):
            return Seq(line, col, [Scalar(line, col, x, str(x)) for x in v])
        if v is None or isinstance(v, str | int | float | bool):
            return Scalar(line, col, v, text)
    return Scalar(line, col, text, text)


def read_ini(b: Builder, text: str, path_override: Sequence[str] | None) -> Inventory:
    inv = AInventory()
    inv.group("all", Scalar(1, 1, "all", "all"))
    inv.group("ungrouped")
    section: str | None = "ungrouped"
    kind = "hosts"
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        col0 = raw.find(line[0]) + 1
        where = Scalar(lineno, col0, line, line)
        if line.startswith("["):
            m = re.match(r"\A\[([^\[\]]+)\]\s*(?:[#;].*)?\Z", line)
            if m is None:
                b.add(where, None, f"malformed section header '{line}' (expected [group])")
                section = None
                continue
            name, kind = m.group(1).strip(), "hosts"
            if ":" in name:
                name, _, kind = name.rpartition(":")
                if kind not in ("vars", "children"):
                    b.add(
                        where,
                        None,
                        f"unknown section type ':{kind}' in '{line}' "
                        "(expected [group], [group:vars] or [group:children])",
                    )
                    section = None
                    continue
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                b.add(where, None, f"'{name}' is not a valid group name")
                section = None
                continue
            section = name
            inv.group(name, where)
            continue
        if section is None:
            continue
        if kind == "children":
            child = line.split()[0]
            if child == section:
                b.add(where, child, f"group '{child}' cannot be its own child")
                continue
            inv.link(section, child, where)
        elif kind == "vars":
            key, eq, value = line.partition("=")
            key = key.strip()
            if not eq or not key:
                b.add(where, None, f"expected key=value in [{section}:vars], got '{line}'")
                continue
            vcol = raw.find("=") + 2
            inv.group(section).vars[key] = (
                Scalar(lineno, col0, key, key),
                _ini_value(value.strip(), lineno, vcol, literal=False),
            )
        else:
            _ini_host(b, inv, section, raw, line, lineno, col0)
    return _finish(b, inv, path_override, inv.groups["all"].node)


def _ini_host(
    b: Builder, inv: AInventory, section: str, raw: str, line: str, lineno: int, col0: int
) -> None:
    where = Scalar(lineno, col0, line, line)
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as e:
        b.add(where, None, f"cannot split the host line: {e}")
        return
    if not tokens:
        return
    pattern, pairs = tokens[0], tokens[1:]
    name_pat, port = _split_port(pattern)
    try:
        names = expand_pattern(name_pat)
    except ValueError as e:
        b.add(where, pattern, str(e))
        return
    hvars: dict[str, Var] = {}
    if port is not None:
        knode = Scalar(lineno, col0, "ansible_port", "ansible_port")
        hvars["ansible_port"] = (knode, _ini_value(port, lineno, col0, literal=True))
    search_from = len(raw) - len(raw.lstrip()) + len(pattern)
    for tok in pairs:
        key, eq, value = tok.partition("=")
        pos = raw.find(key, search_from)
        col = pos + 1 if pos >= 0 else col0
        search_from = max(search_from, pos + len(key))
        if not eq or not key:
            b.add(
                Scalar(lineno, col, tok, tok),
                None,
                f"expected key=value after host '{pattern}', got '{tok}'",
            )
            continue
        hvars[key] = (
            Scalar(lineno, col, key, key),
            _ini_value(value, lineno, col + len(key) + 1, literal=True),
        )
    for name in names:
        h = inv.add_host(name, Scalar(lineno, col0, name, name), section)
        h.vars.update(hvars)


# --------------------------------------------------------------------------- YAML


def looks_like_ansible_yaml(root: TNode) -> bool:
    if not isinstance(root, Map) or not root.items:
        return False

    def is_group(v: TNode) -> bool:
        if isinstance(v, Scalar) and v.value is None:
            return True
        return (
            isinstance(v, Map) and bool(v.items) and all(k.text in GROUP_KEYS for k, _ in v.items)
        )

    all_node = root.get("all")
    if all_node is not None and (isinstance(all_node, Map) or is_group(all_node)):
        return True
    site_keys = {"hosts", "defaults", "groups", "path", "target", "filter", "window", "repro"}
    if any(k.text in site_keys for k, _ in root.items):
        return False
    return all(isinstance(v, Map) and is_group(v) for _, v in root.items)


def read_yaml(b: Builder, root: TNode, path_override: Sequence[str] | None) -> Inventory:
    assert isinstance(root, Map)
    inv = AInventory()
    inv.group("all", root)
    inv.group("ungrouped")
    for k, v in root.items:
        if k.text != "all":
            inv.link("all", k.text, k)
        _yaml_group(b, inv, k.text, k, v, depth=0)
    return _finish(b, inv, path_override, root)


def _yaml_group(
    b: Builder, inv: AInventory, name: str, knode: TNode, node: TNode, depth: int
) -> None:
    g = inv.group(name, knode)
    if depth > 100:
        b.add(knode, name, "groups are nested too deeply")
        return
    if isinstance(node, Scalar) and node.value is None:
        return
    if not isinstance(node, Map):
        b.add(
            node,
            name,
            f"group '{name}' must be a mapping (hosts, vars, children), got {describe(node)}",
        )
        return
    for k, v in node.items:
        if k.text == "hosts":
            _yaml_hosts(b, inv, name, v)
        elif k.text == "vars":
            if isinstance(v, Map):
                for vk, vv in v.items:
                    g.vars[vk.text] = (vk, vv)
            elif not (isinstance(v, Scalar) and v.value is None):
                b.add(v, "vars", f"vars of group '{name}' must be a mapping, got {describe(v)}")
        elif k.text == "children":
            if isinstance(v, Map):
                for ck, cv in v.items:
                    if ck.text == name:
                        b.add(ck, ck.text, f"group '{name}' cannot be its own child")
                        continue
                    inv.link(name, ck.text, ck)
                    _yaml_group(b, inv, ck.text, ck, cv, depth + 1)
            elif not (isinstance(v, Scalar) and v.value is None):
                b.add(
                    v,
                    "children",
                    f"children of group '{name}' must be a mapping, got {describe(v)}",
                )
        else:
            close = suggest(k.text, GROUP_KEYS)
            if close:  # Ansible only warns about other keys; a near miss is surely a typo
                b.add(
                    k, k.text, f"unknown key '{k.text}' in group '{name}' — did you mean '{close}'?"
                )


def _yaml_hosts(b: Builder, inv: AInventory, group: str, node: TNode) -> None:
    if isinstance(node, Scalar) and node.value is None:
        return
    if not isinstance(node, Map):
        b.add(
            node,
            "hosts",
            f"hosts of group '{group}' must be a mapping of host names, got {describe(node)}",
        )
        return
    for k, v in node.items:
        name_pat, port = _split_port(k.text)
        try:
            names = expand_pattern(name_pat)
        except ValueError as e:
            b.add(k, k.text, str(e))
            continue
        hvars: dict[str, Var] = {}
        if port is not None:
            hvars["ansible_port"] = (k, _ini_value(port, k.line or 0, k.col or 0, literal=True))
        if isinstance(v, Map):
            for vk, vv in v.items:
                hvars[vk.text] = (vk, vv)
        elif not (isinstance(v, Scalar) and v.value is None):
            b.add(v, k.text, f"variables of host '{k.text}' must be a mapping, got {describe(v)}")
        for name in names:
            inv.add_host(name, k, group).vars.update(hvars)


# --------------------------------------------------------------------------- both


def _settings(b: Builder, owner: str, vars_: dict[str, Var], is_all: bool) -> dict[str, Setting]:
    out: dict[str, Setting] = {}
    for key, (knode, vnode) in vars_.items():
        schema = HOST_VARS.get(key)
        if key in SECRET_VARS:
            problem = f"{key} on {owner}: " + SECRET_KEY_PROBLEM.format(key="hopcap_password_env")
            out["password"] = Setting(None, vnode, key, [_problem(b, vnode, key, problem)])
            continue
        if schema is None:
            if key in TOP_VARS and not is_all:
                b.add(
                    knode,
                    key,
                    f"'{key}' is a setting of the whole inventory; set it in the vars of "
                    f"'all' ([all:vars]), not on {owner}",
                )
            elif key.startswith("hopcap_") and key not in TOP_VARS:
                hint = (
                    did_you_mean(key, HOPCAP_VARS) or f" (hopcap reads: {', '.join(HOPCAP_VARS)})"
                )
                b.add(knode, key, f"unknown variable '{key}' on {owner}{hint}")
            continue
        if _templated(vnode):
            problem = f"{key} on {owner}: Jinja templates are not evaluated by hopcap"
            if key.startswith("hopcap_"):
                b.add(vnode, key, problem)
            else:
                out[schema] = Setting(None, vnode, key, [_problem(b, vnode, key, problem)])
            continue
        s = b.check(
            vnode,
            key,
            v_ansible_connection if key == "ansible_connection" else HOST_VALIDATORS[schema],
            coerce=True,
            lazy=not key.startswith("hopcap_"),
            context=f" ({owner})",
        )
        if s is not None:
            out[schema] = s
    return out


def _problem(b: Builder, node: TNode, key: str, message: str) -> Problem:
    return Problem(b.file, node.line, node.col, key, message)


def _templated(node: TNode) -> bool:
    return isinstance(node, Scalar) and isinstance(node.value, str) and "{{" in node.value


def _depths(b: Builder, inv: AInventory) -> dict[str, int]:
    depth: dict[str, int] = {"all": 0}
    busy: set[str] = set()

    def d(name: str) -> int:
        if name in depth:
            return depth[name]
        if name in busy:
            g = inv.groups[name]
            b.add(g.node, name, f"group '{name}' is its own ancestor (children form a cycle)")
            return 1
        busy.add(name)
        parents = inv.groups[name].parents or ["all"]
        value = max(d(p) for p in parents) + 1
        busy.discard(name)
        depth[name] = value
        return value

    for name in list(inv.groups):
        d(name)
    return depth


def _ancestors(inv: AInventory, groups: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(groups)
    while todo:
        g = todo.pop()
        if g in seen:
            continue
        seen.add(g)
        todo.extend(inv.groups[g].parents)
    seen.add("all")
    return seen


def _priority(inv: AInventory, name: str) -> int:
    var = inv.groups[name].vars.get("ansible_group_priority")
    if var is not None and isinstance(var[1], Scalar):
        v = var[1].value
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            return int(v)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return 1


def _finish(
    b: Builder, inv: AInventory, path_override: Sequence[str] | None, root: TNode | None
) -> Inventory:
    depth = _depths(b, inv)
    gsettings = {
        name: _settings(b, f"group '{name}'", g.vars, is_all=name == "all")
        for name, g in inv.groups.items()
    }
    specs: list[HostSpec] = []
    for h in inv.hosts.values():
        own = _settings(b, f"host '{h.name}'", h.vars, is_all=False)
        order = sorted(
            _ancestors(inv, h.groups), key=lambda g: (depth.get(g, 1), _priority(inv, g), g)
        )
        merged: dict[str, Setting] = {}
        for g in order:
            merged.update(gsettings[g])
        merged.update(own)
        groups = tuple(g for g in h.groups if g not in ("all", "ungrouped"))
        merged["groups"] = Setting(groups, h.node, "groups")
        specs.append(HostSpec(h.name, h.node, merged, set(own)))

    top: dict[str, Setting] = {}
    failed: set[str] = set()
    for var, (key, validator) in TOP_VARS.items():
        item = inv.groups["all"].vars.get(var)
        if item is None:
            continue
        s = b.check(item[1], var, validator, coerce=True)
        if s is None:
            failed.add(key)
        else:
            top[key] = s
    b.strict_local = False
    return b.finish(
        specs,
        top,
        hosts_node=root,
        path_override=path_override,
        only_relevant=True,
        failed=failed,
    )
