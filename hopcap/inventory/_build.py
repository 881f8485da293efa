"""From validated settings to an `Inventory`: the part every inventory format shares.

A format reader (site.yml, Ansible INI, Ansible YAML) turns its file into `HostSpec`s
whose settings are already merged by that format's precedence rules, plus the
inventory-wide settings. `Builder.finish` then checks what spans hosts (roles and
captures, jumps and their cycles, the path, target, repro) and builds the Inventory,
raising one InventoryError with every problem of the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hopcap.errors import InventoryError, Problem
from hopcap.inventory._tree import Scalar, Seq, TNode, UnknownTag, describe
from hopcap.inventory.values import (
    VALID_HOST_NAME,
    VALID_INTERFACE,
    check_address,
    did_you_mean,
    parse_duration,
    parse_target,
)
from hopcap.model import (
    CONNECTIONS,
    DEFAULT_FILTER,
    DEFAULT_WINDOW_S,
    KINDS,
    ROLE_ORDER,
    ROLES,
    Endpoint,
    Host,
    Inventory,
    Repro,
)

ROLE_ALIASES = {
    "fw": "firewall",
    "firewalls": "firewall",
    "loadbalancer": "lb",
    "load-balancer": "lb",
    "load_balancer": "lb",
    "balancer": "lb",
    "proxy": "lb",
    "haproxy": "lb",
    "srv": "server",
    "backend": "server",
    "web": "server",
    "gw": "router",
    "gateway": "router",
    "vpn": "router",
    "cli": "client",
}

_SHELL_META = set(";&|`$()<>\\\"' \t\n*?[]{}!#~=,:/")


class Bad(Exception):
    """A value is wrong; `issues` are (node or None for the value itself, message)."""

    def __init__(self, *issues: tuple[TNode | None, str]) -> None:
        super().__init__(issues[0][1] if issues else "")
        self.issues = issues


Validator = Callable[[TNode, bool], Any]


# --------------------------------------------------------------------------- validators


def _scalar(node: TNode, what: str) -> object:
    if not isinstance(node, Scalar):
        raise Bad((None, f"expected {what}, got {describe(node)}"))
    if isinstance(node.value, UnknownTag):
        raise Bad((None, f"unsupported YAML tag {node.value.tag}: expected {what}"))
    return node.value


def v_str(node: TNode, coerce: bool, what: str = "a string") -> str:
    v = _scalar(node, what)
    if coerce and isinstance(v, int | float) and not isinstance(v, bool):
        v = node.text if isinstance(node, Scalar) else str(v)
    if not isinstance(v, str):
        raise Bad((None, f"expected {what}, got {describe(node)}"))
    if "\x00" in v:
        raise Bad((None, "contains a NUL character"))
    if not v.strip():
        raise Bad((None, f"expected {what}, got an empty string"))
    return v.strip()


def v_address(node: TNode, coerce: bool) -> str:
    s = v_str(node, coerce, "a host name or IP address")
    why = check_address(s)
    if why:
        raise Bad((None, why))
    return s


def v_port(node: TNode, coerce: bool) -> int:
    v = _scalar(node, "a port number (1-65535)")
    if coerce and isinstance(v, str) and v.strip().isdigit():
        v = int(v.strip())
    if isinstance(v, bool) or not isinstance(v, int):
        raise Bad((None, f"expected a port number (1-65535), got {describe(node)}"))
    if not 1 <= v <= 65535:
        raise Bad((None, f"{v} is out of range 1-65535"))
    return v


def v_user(node: TNode, coerce: bool) -> str:
    s = v_str(node, coerce, "a user name")
    if s.startswith("-") or any(c.isspace() or ord(c) < 32 for c in s):
        raise Bad((None, f"'{s}' is not a valid user name"))
    return s


def v_path(node: TNode, coerce: bool) -> str:
    s = v_str(node, coerce, "a file path")
    return os.path.expanduser(s)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def v_bool(node: TNode, coerce: bool) -> bool:
    v = _scalar(node, "true or false")
    if coerce and isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    if coerce and isinstance(v, int) and v in (0, 1):
        return bool(v)
    if not isinstance(v, bool):
        raise Bad((None, f"expected true or false, got {describe(node)}"))
    return v


def v_role(node: TNode, coerce: bool) -> str:
    s = v_str(node, coerce, "a role")
    if s in ROLES:
        return s
    raise Bad(
        (
            None,
            f"unknown role '{s}'{did_you_mean(s, ROLES, ROLE_ALIASES)} "
            f"(valid roles: {', '.join(ROLES)})",
        )
    )


def _one_of(node: TNode, coerce: bool, what: str, valid: Sequence[str]) -> str:
    s = v_str(node, coerce, f"a {what}")
    if s not in valid:
        hint = did_you_mean(s, valid)
        raise Bad((None, f"unknown {what} '{s}'{hint} (valid: {', '.join(valid)})"))
    return s


def v_connection(node: TNode, coerce: bool) -> str:
    return _one_of(node, coerce, "connection", CONNECTIONS)


def v_kind(node: TNode, coerce: bool) -> str:
    return _one_of(node, coerce, "kind", KINDS)


_ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,127}\Z")


def v_env_name(node: TNode, coerce: bool) -> str:
    s = v_str(node, coerce, "an environment variable name")
    if not _ENV_NAME.match(s):
        # never repeat the value: it may be the password itself, written by mistake
        raise Bad(
            (
                None,
                "expected the NAME of an environment variable that holds the password "
                "(letters, digits, '_', e.g. FW_PASSWORD), never the password itself",
            )
        )
    return s


# keys that would put a secret into the file: refused, with the way to do it instead
SECRET_KEYS = ("password", "passwd", "pass", "ssh_password", "ssh_pass", "secret")
SECRET_KEY_PROBLEM = (
    "hopcap never reads a password from the inventory: export it in an environment "
    "variable and name that variable with {key}: NAME"
)


def interface_problem(name: str) -> str | None:
    """None when `name` may be passed to a remote command as an interface; else why not."""
    if VALID_INTERFACE.match(name):
        return None
    bad = sorted({c for c in name if c in _SHELL_META or ord(c) < 32})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        f5 = (
            " (':' only before an F5 BIG-IP noise suffix: ':n', ':nn', ':nnn', ':nnnp')"
            if ":" in bad
            else ""
        )
        return f"interface name '{name}' contains {shown}, which an interface name cannot{f5}"
    if len(name) > 15:
        return f"interface name '{name}' is longer than 15 characters"
    if name[:1] in ("-", "."):
        return f"interface name '{name}' cannot start with '{name[0]}'"
    return f"interface name '{name}' is not valid (letters, digits, '_', '.', '+', '-'; at most 15)"


def _str_list(node: TNode, coerce: bool, what: str) -> list[tuple[TNode, str]]:
    """A list of strings (each with its node). With `coerce`, a comma separated string."""
    if isinstance(node, Scalar) and coerce and isinstance(node.value, str):
        text = node.value.strip()
        if text.startswith("[") and text.endswith("]"):  # Ansible INI: "['a', 'b']"
            text = text[1:-1]
        parts = [p.strip().strip("'\"").strip() for p in text.split(",")]
        if not all(parts):
            raise Bad((None, f"expected a comma separated list of {what}, got '{node.value}'"))
        return [(node, p) for p in parts]
    if not isinstance(node, Seq):
        raise Bad((None, f"expected a list of {what}, got {describe(node)}"))
    out: list[tuple[TNode, str]] = []
    issues: list[tuple[TNode | None, str]] = []
    for item in node.items:
        try:
            out.append((item, v_str(item, coerce, what)))
        except Bad as b:
            issues.extend((item, m) for _, m in b.issues)
    if issues:
        raise Bad(*issues)
    return out


def v_capture(node: TNode, coerce: bool) -> tuple[str, ...] | Literal["auto"]:
    form = "a list of interfaces (e.g. [eth0, eth1]) or auto"
    if isinstance(node, Scalar) and isinstance(node.value, str):
        s = node.value.strip()
        if s == "auto":
            return "auto"
        if not coerce:
            hint = "[" + ", ".join(p.strip() for p in s.split(",")) + "]" if "," in s else f"[{s}]"
            raise Bad((None, f"expected {form}, got '{s}' — write capture: {hint}"))
    if isinstance(node, Seq) and not node.items:
        raise Bad((None, f"expected {form}, got an empty list"))
    try:
        items = _str_list(node, coerce, "interface names")
    except Bad as b:
        if isinstance(node, Scalar):
            raise Bad((None, f"expected {form}, got {describe(node)}")) from None
        raise b from None
    issues: list[tuple[TNode | None, str]] = []
    seen: set[str] = set()
    names: list[str] = []
    for item, name in items:
        why = interface_problem(name)
        if why:
            issues.append((item, why))
        elif name in seen:
            issues.append((item, f"interface '{name}' is listed twice"))
        seen.add(name)
        names.append(name)
    if issues:
        raise Bad(*issues)
    return tuple(names)


def host_name_problem(name: str) -> str | None:
    if VALID_HOST_NAME.match(name):
        return None
    return (
        f"'{name}' is not a valid inventory host name (letters, digits, '_', '.', '-'; "
        "no ':', '/' or spaces)"
    )


def v_host_ref(node: TNode, coerce: bool) -> str:
    s = v_str(node, coerce, "an inventory host name")
    why = host_name_problem(s)
    if why:
        raise Bad((None, why))
    return s


def v_groups(node: TNode, coerce: bool) -> tuple[str, ...]:
    items = _str_list(node, coerce, "group names")
    seen: set[str] = set()
    issues: list[tuple[TNode | None, str]] = []
    for item, name in items:
        if name in seen:
            issues.append((item, f"group '{name}' is listed twice"))
        seen.add(name)
    if issues:
        raise Bad(*issues)
    return tuple(n for _, n in items)


def v_path_list(node: TNode, coerce: bool) -> list[tuple[TNode, str]]:
    if isinstance(node, Seq) and not node.items:
        raise Bad((None, "the path is empty: list the hosts in hop order from the client side"))
    return _str_list(node, coerce, "host names")


def v_target(node: TNode, coerce: bool) -> Endpoint:
    s = v_str(node, coerce, "host:port")
    try:
        return parse_target(s)
    except ValueError as e:
        raise Bad((None, str(e))) from None


def v_filter(node: TNode, coerce: bool) -> str:
    return v_str(node, coerce, "a BPF filter string")


def v_window(node: TNode, coerce: bool) -> float:
    v = _scalar(node, "a duration")
    if not isinstance(v, str | int | float) or isinstance(v, bool):
        raise Bad((None, f"expected a duration (30s, 5m), got {describe(node)}"))
    try:
        seconds = parse_duration(v)
    except ValueError as e:
        raise Bad((None, str(e))) from None
    if seconds <= 0:
        raise Bad((None, f"window must be longer than 0 seconds, got {v!r}"))
    return seconds


def v_run(node: TNode, coerce: bool) -> str:
    return v_str(node, coerce, "a shell command")


HOST_VALIDATORS: dict[str, Validator] = {
    "address": v_address,
    "port": v_port,
    "user": v_user,
    "identity": v_path,
    "known_hosts": v_path,
    "sudo": v_bool,
    "role": v_role,
    "capture": v_capture,
    "jump": v_host_ref,
    "groups": v_groups,
    "connection": v_connection,
    "kind": v_kind,
    "password_env": v_env_name,
}

# what a `connection: local` host (this machine, as the user running hopcap) cannot have
SSH_ONLY_KEYS = ("address", "port", "user", "identity", "known_hosts", "jump", "password_env")


# --------------------------------------------------------------------------- building


@dataclass
class Setting:
    value: Any
    node: TNode  # where the value is written
    key: str  # the key as written (e.g. `ansible_host` for address)
    problem: list[Problem] | None = None  # deferred problems (Ansible vars of unused hosts)


@dataclass
class HostSpec:
    name: str
    node: TNode  # where the host is named
    settings: dict[str, Setting] = field(default_factory=dict)  # merged, by schema key
    own: set[str] = field(default_factory=set)  # schema keys set on the host itself
    bad: set[str] = field(default_factory=set)  # schema keys written wrong (reported already)

    def failed(self, key: str) -> bool:
        s = self.settings.get(key)
        return key in self.bad or (s is not None and bool(s.problem))


@dataclass
class Builder:
    file: str
    problems: list[Problem] = field(default_factory=list)
    # site.yml: an SSH setting written on a `connection: local` host is an error; Ansible
    # inventories (shared with Ansible, where `localhost` often carries them) ignore them
    strict_local: bool = True

    def add(self, node: TNode | None, key: str | None, message: str) -> None:
        line = node.line if node is not None else None
        col = node.col if node is not None else None
        self.problems.append(Problem(self.file, line, col, key, message))

    def check(
        self,
        node: TNode,
        key: str,
        validator: Validator,
        coerce: bool = False,
        *,
        lazy: bool = False,
        context: str = "",
    ) -> Setting | None:
        """Validate one value. Problems are recorded now, or kept in the returned Setting
        when `lazy` (reported only if a host that matters uses the value)."""
        try:
            return Setting(validator(node, coerce), node, key)
        except Bad as b:
            found = [
                Problem(
                    self.file,
                    (n or node).line,
                    (n or node).col,
                    key,
                    f"{key}{context}: {msg}",
                )
                for n, msg in b.issues
            ]
            if lazy:
                return Setting(None, node, key, found)
            self.problems.extend(found)
            return None

    def use(self, s: Setting | None) -> Any:
        """The value of a setting, reporting its deferred problems."""
        if s is None:
            return None
        if s.problem:
            self.problems.extend(s.problem)
            return None
        return s.value

    def fail_if_any(self) -> None:
        if self.problems:
            raise InventoryError(sorted_problems(self.problems))

    # ------------------------------------------------------------------ the whole inventory

    def finish(
        self,
        hosts: Sequence[HostSpec],
        top: dict[str, Setting],
        *,
        hosts_node: TNode | None,
        path_override: Sequence[str] | None,
        only_relevant: bool = False,
        failed: set[str] | None = None,
    ) -> Inventory:
        """Cross-host checks and the Inventory. `top` holds the inventory-wide settings by
        schema key: path, target, filter, window, repro_on, repro_run (each optional);
        `failed` names those whose value was wrong (already reported)."""
        failed = failed or set()
        by_name = {h.name: h for h in hosts}
        names = list(by_name)

        def role_of(h: HostSpec) -> str | None:
            s = h.settings.get("role")
            return s.value if s is not None and not s.problem else None

        def jump_of(h: HostSpec) -> Setting | None:
            s = h.settings.get("jump")
            if s is None or s.problem:
                return s
            if s.value == h.name and "jump" not in h.own:
                return None  # a jump host does not inherit a jump to itself
            if _is_local(h) and "jump" not in h.own:
                return None  # nor does this machine (it connects to nothing)
            return s

        repro_on = top.get("repro_on")
        relevant: set[str] = set(names)
        if only_relevant:
            relevant = {h.name for h in hosts if role_of(h) is not None}
            if repro_on is not None and repro_on.value in by_name:
                relevant.add(repro_on.value)
            for n in path_override or ():
                if n in by_name:
                    relevant.add(n)
            path_s = top.get("path")
            if path_s is not None and not path_s.problem:
                relevant.update(n for _, n in path_s.value if n in by_name)
            todo = list(relevant)
            while todo:
                j = jump_of(by_name[todo.pop()])
                if (
                    j is not None
                    and not j.problem
                    and j.value in by_name
                    and j.value not in relevant
                ):
                    relevant.add(j.value)
                    todo.append(j.value)

        built: dict[str, Host] = {}
        for h in hosts:
            if h.name not in relevant:
                continue
            built_host = self._host(h, by_name, jump_of(h), role_of(h))
            if built_host is not None:
                built[h.name] = built_host

        self._jump_cycles([h for h in hosts if h.name in relevant], by_name, jump_of)
        local = [h for h in hosts if h.name in built and built[h.name].is_local]
        for extra in local[1:]:
            st = extra.settings["connection"]
            self.add(
                st.node,
                st.key,
                f"hosts '{local[0].name}' and '{extra.name}' are both connection: local; there "
                "is one local machine: make it one host and list its interfaces in its capture",
            )

        path: list[str] = []
        if "path" not in failed or path_override is not None:
            path = self._path(hosts, by_name, top.get("path"), path_override, role_of, hosts_node)

        target: Endpoint | None = self.use(top.get("target"))
        if target is None and "target" not in failed and len(path) == 1:
            # auto finds interfaces from the routes toward the path neighbours; a host
            # alone on the path has none, so only the target can tell
            cap = by_name[path[0]].settings.get("capture") if path[0] in by_name else None
            if cap is not None and cap.value == "auto":
                self.add(
                    cap.node,
                    "capture",
                    f"host '{path[0]}' has capture: auto and is alone on the path, so it "
                    "needs 'target' (the service as the client sees it, e.g. 203.0.113.80:80)",
                )

        flt: str | None = self.use(top.get("filter"))
        window: float | None = self.use(top.get("window"))
        repro: Repro | None = None
        run_s = top.get("repro_run")
        on = self.use(repro_on)
        run = self.use(run_s)
        if repro_on is not None and on is not None and on not in by_name:
            self.add(
                repro_on.node,
                repro_on.key,
                f"repro runs on unknown host '{on}'{did_you_mean(on, names)}",
            )
        if repro_on is None and run_s is not None and "repro_on" not in failed:
            self.add(run_s.node, run_s.key, f"'{run_s.key}' needs the host to run it on")
        if run_s is None and repro_on is not None and "repro_run" not in failed:
            self.add(repro_on.node, repro_on.key, f"'{repro_on.key}' needs the command to run")
        if on is not None and run is not None and on in by_name:
            repro = Repro(on=on, run=run)

        self.fail_if_any()
        return Inventory(
            source=self.file,
            hosts=built,
            path=tuple(path),
            target=target,
            filter=flt if flt is not None else DEFAULT_FILTER,
            window_s=window if window is not None else DEFAULT_WINDOW_S,
            repro=repro,
        )

    def _host(
        self,
        h: HostSpec,
        by_name: dict[str, HostSpec],
        jump: Setting | None,
        role: str | None,
    ) -> Host | None:
        s = h.settings
        ok = True
        for st in s.values():
            if st.problem:
                self.problems.extend(st.problem)
                ok = False
        why_name = host_name_problem(h.name)
        if why_name:
            self.add(h.node, h.name, why_name)
            ok = False
        local = "connection" in s and s["connection"].value == "local"
        if local:
            for k in SSH_ONLY_KEYS:
                if self.strict_local and k in h.own and k in s:
                    self.add(
                        s[k].node,
                        s[k].key,
                        f"host '{h.name}' is connection: local (this machine, no SSH), so "
                        f"'{s[k].key}' does not apply to it",
                    )
                    ok = False
            s = {k: v for k, v in s.items() if k not in SSH_ONLY_KEYS}
            jump = None
        address: str | None = s["address"].value if "address" in s else None
        if address is None and local:
            address = "localhost"
        elif address is None:
            why = check_address(h.name)
            if why and not why_name:
                self.add(
                    h.node,
                    h.name,
                    f"host '{h.name}' has no 'address', and its name is not one to connect "
                    f"to ({why}); add 'address:'",
                )
                ok = False
            address = h.name
        cap = s.get("capture")
        if role is not None and cap is None and "role" in s and not h.failed("capture"):
            self.add(
                s["role"].node,
                "capture",
                f"host '{h.name}' has role {role} but no 'capture': list its interfaces "
                "(capture: [eth0]) or write capture: auto",
            )
            ok = False
        if role is None and cap is not None and "capture" in h.own and not h.failed("role"):
            self.add(
                cap.node,
                cap.key,
                f"host '{h.name}' has '{cap.key}' but no role; give it a role "
                f"({', '.join(ROLES)}) or drop '{cap.key}' (a host without a role is only "
                "a jump host)",
            )
            ok = False
        if jump is not None and not jump.problem and jump.value not in by_name:
            self.add(
                jump.node,
                jump.key,
                f"host '{h.name}' jumps through unknown host '{jump.value}'"
                f"{did_you_mean(jump.value, [n for n in by_name if n != h.name])}",
            )
            ok = False
        elif jump is not None and not jump.problem and _is_local(by_name[jump.value]):
            self.add(
                jump.node,
                jump.key,
                f"host '{h.name}' jumps through '{jump.value}', which is connection: local; "
                "a host reached without SSH cannot be a jump host (drop the jump: this "
                "machine connects directly)",
            )
            ok = False
        if not ok:
            return None

        def val(k: str, default: Any = None) -> Any:
            st = s.get(k)
            return st.value if st is not None else default

        return Host(
            name=h.name,
            address=address,
            port=val("port", None),
            user=val("user"),
            identity=val("identity"),
            known_hosts=val("known_hosts"),
            sudo=val("sudo", False),
            role=role,
            capture=(cap.value if cap is not None else ()) if role is not None else (),
            jump=jump.value if jump is not None else None,
            groups=val("groups", ()),
            connection=val("connection", "ssh"),
            kind=val("kind", "linux"),
            password_env=val("password_env"),
        )

    def _jump_cycles(
        self,
        hosts: Sequence[HostSpec],
        by_name: dict[str, HostSpec],
        jump_of: Callable[[HostSpec], Setting | None],
    ) -> None:
        reported: set[frozenset[str]] = set()
        for start in hosts:
            chain: list[str] = []
            cur: HostSpec | None = start
            while cur is not None and cur.name not in chain:
                chain.append(cur.name)
                j = jump_of(cur)
                cur = by_name.get(j.value) if j is not None and not j.problem else None
            if cur is None:
                continue
            cycle = chain[chain.index(cur.name) :]
            key = frozenset(cycle)
            if key in reported:
                continue
            reported.add(key)
            first = by_name[cycle[0]]
            j = jump_of(first)
            assert j is not None
            loop = " -> ".join([*cycle, cycle[0]])
            self.add(j.node, j.key, f"jump hosts form a cycle: {loop}")

    def _path(
        self,
        hosts: Sequence[HostSpec],
        by_name: dict[str, HostSpec],
        path_s: Setting | None,
        override: Sequence[str] | None,
        role_of: Callable[[HostSpec], str | None],
        hosts_node: TNode | None,
    ) -> list[str]:
        names = list(by_name)
        with_role = [n for n in names if role_of(by_name[n]) is not None]

        def check_list(items: Sequence[tuple[TNode | None, str]], key: str, file: str) -> None:
            seen: set[str] = set()
            for node, n in items:
                if n not in by_name:
                    msg = f"path names unknown host '{n}'{did_you_mean(n, names)}"
                elif n in seen:
                    msg = f"host '{n}' is on the path twice"
                elif role_of(by_name[n]) is None and not by_name[n].failed("role"):
                    msg = (
                        f"host '{n}' is on the path but has no role "
                        f"(one of {', '.join(ROLES)}) and no capture"
                    )
                else:
                    seen.add(n)
                    continue
                seen.add(n)
                line = node.line if node else None
                col = node.col if node else None
                self.problems.append(Problem(file, line, col, key, msg))

        if override is not None:
            items = [(None, n.strip()) for n in override]
            if not items or not all(n for _, n in items):
                self.problems.append(
                    Problem(
                        "--path", None, None, "path", "--path needs host names, e.g. client,fw,srv"
                    )
                )
                return []
            check_list(items, "path", "--path")
            return [n for _, n in items]
        if path_s is not None:
            if path_s.problem:
                self.problems.extend(path_s.problem)
                return []
            check_list(path_s.value, path_s.key, self.file)
            return [n for _, n in path_s.value]
        if not with_role:
            if hosts:
                self.add(
                    hosts_node,
                    "role",
                    "no host has a role, so there is nothing to capture: give the hosts on "
                    f"the path a role ({', '.join(ROLES)}) and a capture",
                )
            return []
        order = {n: i for i, n in enumerate(names)}
        return sorted(with_role, key=lambda n: (ROLE_ORDER[role_of(by_name[n]) or ""], order[n]))


def _is_local(h: HostSpec) -> bool:
    st = h.settings.get("connection")
    return st is not None and not st.problem and st.value == "local"


def sorted_problems(problems: Sequence[Problem]) -> list[Problem]:
    """Unique problems, in file order (problems without a line first)."""
    seen: set[tuple[object, ...]] = set()
    out: list[Problem] = []
    for p in problems:
        k = (p.file, p.line, p.column, p.key, p.message)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return sorted(out, key=lambda p: (p.line or 0, p.column or 0))


def key_problem(key: str, valid: Sequence[str], where: str) -> str:
    hint = did_you_mean(key, valid)
    if not hint:
        hint = f" (valid keys: {', '.join(valid)})"
    return f"unknown key '{key}' in {where}{hint}"
