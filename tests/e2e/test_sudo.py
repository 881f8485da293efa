"""A non-root login that captures through `sudo -n`, and one that sudo refuses."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopcap import lab
from hopcap.errors import EXIT_OK, EXIT_PARTIAL
from tests import labnames
from tests.e2e.conftest import hopcap_run, inventory_variant

pytestmark = pytest.mark.lab

SUDOER = labnames.prefix("hcsudo")
NOSUDO = labnames.prefix("hcnosu")
SUDOERS_FILE = Path("/etc/sudoers.d/hopcap-e2e")


@pytest.fixture(scope="module")
def lab_users() -> Iterator[None]:
    """Two machine users (the lab's namespaces share /etc/passwd), removed afterwards."""
    try:
        for user in (SUDOER, NOSUDO):
            subprocess.run(["userdel", "-r", user], capture_output=True)
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", user], check=True)
            # not locked ('!'), or sshd without PAM refuses the login
            subprocess.run(["usermod", "-p", "*", user], check=True)
        SUDOERS_FILE.write_text(f"{SUDOER} ALL=(root) NOPASSWD: ALL\n")
        SUDOERS_FILE.chmod(0o440)
        yield
    finally:
        SUDOERS_FILE.unlink(missing_ok=True)
        for user in (SUDOER, NOSUDO):
            subprocess.run(["userdel", "-r", user], capture_output=True)


def test_capture_through_sudo(clean_lab: lab.LabInfo, lab_users: None, tmp_path: Path) -> None:
    inv = inventory_variant(
        clean_lab.inventory, tmp_path / "inv.yml", fw={"user": SUDOER, "sudo": True}
    )
    res = hopcap_run(inv, tmp_path / "b")
    assert res.code == EXIT_OK, res.stderr
    fw = [p for p in res.manifest["points"] if p["host"] == "fw"]
    assert [p["name"] for p in fw] == ["fw:eth0", "fw:eth1"]
    for p in fw:
        assert p["command"].startswith("sudo -n -- sh -c"), p["command"]
        assert p["packets"] > 0 and p["error"] is None
    assert res.findings("drop", "inject", "rewrite") == []
    # the facts that need root were collected through sudo too
    assert (res.out / "facts" / "fw" / "before" / "nft.txt").read_text().strip()
    assert list(Path("/tmp").glob(f"hopcap.*.{res.manifest['run_id']}.*")) == []


def test_sudo_that_wants_a_password_is_a_clear_error(
    clean_lab: lab.LabInfo, lab_users: None, tmp_path: Path
) -> None:
    inv = inventory_variant(
        clean_lab.inventory, tmp_path / "inv.yml", fw={"user": NOSUDO, "sudo": True}
    )
    res = hopcap_run(inv, tmp_path / "b")
    assert res.code == EXIT_PARTIAL, res.stderr
    assert "fw: `sudo -n` is not allowed" in res.stderr
    fw = [p for p in res.manifest["points"] if p["host"] == "fw"]
    assert fw and all(p["error"] and "sudo -n" in p["error"] for p in fw)
    # the other hosts still captured
    assert all(p["packets"] > 0 for p in res.manifest["points"] if p["host"] != "fw")
