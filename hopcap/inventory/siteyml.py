"""hopcap's own inventory format, `site.yml` (see docs/inventory.md)."""

from __future__ import annotations

from collections.abc import Sequence

from hopcap.inventory._build import (
    HOST_VALIDATORS,
    SECRET_KEY_PROBLEM,
    SECRET_KEYS,
    Builder,
    HostSpec,
    Setting,
    key_problem,
    v_filter,
    v_path_list,
    v_run,
    v_target,
    v_window,
)
from hopcap.inventory._tree import Map, Scalar, Seq, TNode, describe
from hopcap.inventory.values import did_you_mean, suggest
from hopcap.model import Inventory

TOP_KEYS = ("defaults", "groups", "hosts", "path", "target", "filter", "window", "repro")
HOST_KEYS = tuple(HOST_VALIDATORS)
SHARED_KEYS = tuple(k for k in HOST_KEYS if k not in ("address", "groups"))
REPRO_KEYS = ("on", "run")


def unique_items(b: Builder, m: Map, noun: str, where: str) -> list[tuple[Scalar, TNode]]:
    """The pairs of `m` with duplicate keys reported (YAML would silently keep the last)."""
    first: dict[str, Scalar] = {}
    out: list[tuple[Scalar, TNode]] = []
    for k, v in m.items:
        if k.text in first:
            b.add(
                k,
                k.text,
                f"duplicate {noun} '{k.text}' in {where} (first at line {first[k.text].line}); "
                "YAML would silently keep only the last one",
            )
            continue
        first[k.text] = k
        out.append((k, v))
    return out


def read_settings(
    b: Builder, node: TNode, allowed: Sequence[str], where: str, bad: set[str] | None = None
) -> dict[str, Setting]:
    """Validate the host settings in mapping `node` (defaults, a group or a host); the
    keys written wrong (or misspelled: `captrue` counts as `capture`) go into `bad`."""
    bad = bad if bad is not None else set()
    out: dict[str, Setting] = {}
    if isinstance(node, Scalar) and node.value is None:
        return out
    if not isinstance(node, Map):
        b.add(node, None, f"{where} must be a mapping of settings, got {describe(node)}")
        return out
    for k, v in unique_items(b, node, "key", where):
        key = k.text
        if key not in allowed:
            if key == "address" and key in HOST_KEYS:
                b.add(k, key, f"'address' belongs to a host, not to {where}")
            elif key.lower() in SECRET_KEYS:
                b.add(
                    k, key, f"'{key}' in {where}: " + SECRET_KEY_PROBLEM.format(key="password_env")
                )
            elif key == "groups" and key in HOST_KEYS:
                b.add(k, key, f"'groups' is a host setting; groups do not nest ({where})")
            else:
                b.add(k, key, key_problem(key, allowed, where))
                meant = suggest(key, allowed)
                if meant:
                    bad.add(meant)
            continue
        s = b.check(v, key, HOST_VALIDATORS[key], context=f" ({where})")
        if s is not None:
            out[key] = s
        else:
            bad.add(key)
    return out


def read_site(b: Builder, root: TNode, path_override: Sequence[str] | None) -> Inventory:
    if not isinstance(root, Map):
        b.add(
            root,
            None,
            f"the top level must be a mapping with 'hosts:' (and {', '.join(TOP_KEYS[3:])}), "
            f"got {describe(root)}",
        )
        b.fail_if_any()
        raise AssertionError("unreachable")
    top: dict[str, tuple[Scalar, TNode]] = {}
    for k, v in unique_items(b, root, "key", "the top level"):
        if k.text not in TOP_KEYS:
            b.add(k, k.text, key_problem(k.text, TOP_KEYS, "the top level"))
            continue
        top[k.text] = (k, v)

    defaults: dict[str, Setting] = {}
    defaults_bad: set[str] = set()
    if "defaults" in top:
        defaults = read_settings(b, top["defaults"][1], SHARED_KEYS, "defaults", defaults_bad)

    groups: dict[str, dict[str, Setting]] = {}
    groups_bad: dict[str, set[str]] = {}
    if "groups" in top:
        gnode = top["groups"][1]
        if isinstance(gnode, Map):
            for k, v in unique_items(b, gnode, "group", "groups"):
                gbad = groups_bad[k.text] = set()
                groups[k.text] = read_settings(b, v, SHARED_KEYS, f"group '{k.text}'", gbad)
        elif not (isinstance(gnode, Scalar) and gnode.value is None):
            b.add(
                gnode, "groups", f"groups must map group names to settings, got {describe(gnode)}"
            )

    specs: list[HostSpec] = []
    hosts_node: TNode | None = None
    if "hosts" not in top:
        b.add(root, "hosts", "missing 'hosts:' (the hosts of the site, by name)")
    else:
        hosts_key, hosts_node = top["hosts"]
        if not isinstance(hosts_node, Map) or not hosts_node.items:
            got = "nothing" if not isinstance(hosts_node, Map) else "an empty mapping"
            if isinstance(hosts_node, Map | Seq) or (
                isinstance(hosts_node, Scalar) and hosts_node.value is not None
            ):
                got = describe(hosts_node) if not isinstance(hosts_node, Map) else got
            b.add(
                hosts_node if not isinstance(hosts_node, Scalar) else hosts_key,
                "hosts",
                f"'hosts' must map host names to their settings, got {got}",
            )
        else:
            for k, v in unique_items(b, hosts_node, "host", "hosts"):
                spec = _host_spec(b, k, v, defaults, groups)
                spec.bad |= defaults_bad
                for g in spec.settings["groups"].value if "groups" in spec.settings else ():
                    spec.bad |= groups_bad.get(g, set())
                specs.append(spec)

    settings: dict[str, Setting] = {}
    failed: set[str] = set()
    for key, validator in (
        ("path", v_path_list),
        ("target", v_target),
        ("filter", v_filter),
        ("window", v_window),
    ):
        if key in top:
            s = b.check(top[key][1], key, validator)
            if s is not None:
                settings[key] = s
            else:
                failed.add(key)
    if "repro" in top:
        _repro(b, top["repro"][1], settings, failed)
    return b.finish(
        specs, settings, hosts_node=hosts_node, path_override=path_override, failed=failed
    )


def _host_spec(
    b: Builder,
    k: Scalar,
    v: TNode,
    defaults: dict[str, Setting],
    groups: dict[str, dict[str, Setting]],
) -> HostSpec:
    name = k.text
    bad: set[str] = set()
    own = read_settings(b, v, HOST_KEYS, f"host '{name}'", bad)
    merged = dict(defaults)
    gs = own.get("groups")
    if gs is not None:
        items = gs.node.items if isinstance(gs.node, Seq) else [gs.node] * len(gs.value)
        for item, g in reversed(list(zip(items, gs.value, strict=True))):
            if g not in groups:
                b.add(
                    item,
                    "groups",
                    f"host '{name}' is in unknown group '{g}'{did_you_mean(g, groups)}"
                    + ("" if groups else " (no 'groups:' are defined)"),
                )
                continue
            merged.update(groups[g])
    merged.update(own)
    return HostSpec(name=name, node=k, settings=merged, own=set(own), bad=bad)


def _repro(b: Builder, node: TNode, settings: dict[str, Setting], failed: set[str]) -> None:
    failed.update(("repro_on", "repro_run"))  # until found valid below
    if not isinstance(node, Map):
        b.add(
            node,
            "repro",
            f"repro must be a mapping {{on: HOST, run: COMMAND}}, got {describe(node)}",
        )
        return
    got: dict[str, tuple[Scalar, TNode]] = {}
    unknown: list[str] = []
    for k, v in unique_items(b, node, "key", "repro"):
        if k.text not in REPRO_KEYS:
            b.add(k, k.text, key_problem(k.text, REPRO_KEYS, "repro"))
            unknown.append(k.text)
            continue
        got[k.text] = (k, v)
    for key, validator in (("on", HOST_VALIDATORS["jump"]), ("run", v_run)):
        if key not in got:
            if not any(suggest(k, REPRO_KEYS) == key for k in unknown):
                b.add(node, f"repro.{key}", f"repro needs '{key}:'")
            continue
        s = b.check(got[key][1], key, validator, context=" (repro)")
        if s is not None:
            settings[f"repro_{key}"] = s
            failed.discard(f"repro_{key}")
