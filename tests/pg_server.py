"""A throwaway PostgreSQL server for tests and measurements: initdb in a temporary folder,
listening on 127.0.0.1 at a free port, password login (scram-sha-256) for TCP, removed at
the end.

initdb and postgres refuse to run as root; as root the server runs as the ``postgres``
user (Debian's package creates it), else as ``nobody``.

Standalone, for trying things by hand::

    python tests/pg_server.py          # prints the URI, stops on Ctrl-C
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

USER = "segcli_test"
PASSWORD = "s3cret-Pa55"  # looked for in outputs by the tests: it must never appear there
DATABASE = "shop"


def server_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres (PATH first, then Debian's layout)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).resolve().parent)):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when this process is root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


@dataclass
class PgServer:
    """One running server; ``uri()`` gives a libpq URI for the test user."""

    bin: Path
    root: Path
    port: int = 0
    host: str = "127.0.0.1"
    user: str = USER
    password: str = PASSWORD
    database: str = DATABASE
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def uri(self, *, password: bool = True, database: str | None = None, port: int | None = None) -> str:
        auth = f"{self.user}:{self.password}" if password else self.user
        return f"postgresql://{auth}@{self.host}:{port or self.port}/{database or self.database}"

    def _cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        ids = _run_as()
        return subprocess.run(list(args), check=check, capture_output=True, text=True, cwd=self.root,
                              user=ids[0] if ids else None, group=ids[1] if ids else None,
                              extra_groups=[] if ids else None, env={**os.environ, "LC_ALL": "C.UTF-8"})

    def start(self) -> PgServer:
        ids = _run_as()
        if ids:
            os.chown(self.root, *ids)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if ids:
            os.chown(pwfile, *ids)
        try:
            self._cmd(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
                      "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-sync")
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.strip()[-500:]}") from None
        finally:
            pwfile.unlink(missing_ok=True)
        options = {"listen_addresses": self.host, "unix_socket_directories": str(self.root),
                   "max_connections": "40", "shared_buffers": "64MB", **self.settings}
        for _attempt in range(3):  # another process may take the port between choosing and binding
            self.port = free_port()
            opts = " ".join(f"-c {k}={v}" for k, v in {**options, "port": str(self.port)}.items())
            done = self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                             "-o", opts, "-w", "-t", "60", "start", check=False)
            if done.returncode == 0:
                break
        else:
            log = (self.root / "log").read_text(errors="replace")[-800:] if (self.root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()[-300:]} {log}")
        self.sql(f"CREATE DATABASE {self.database}", database="postgres")
        return self

    def sql(self, statement: str, *, database: str | None = None) -> list[tuple]:
        """Run SQL through the ADBC driver (autocommit) and return the rows."""
        import adbc_driver_postgresql.dbapi as pg

        with pg.connect(self.uri(database=database), autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start_server(settings: dict[str, str] | None = None) -> PgServer:
    """Start a server in a new temporary folder (fsync off unless ``settings`` says otherwise)."""
    binary = server_bin()
    if binary is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql")
    # as root the server runs as another user, who must reach its folder: /tmp, not a private TMPDIR
    root = Path(tempfile.mkdtemp(prefix="pgtest-", dir="/tmp" if _run_as() and os.path.isdir("/tmp") else None))
    server = PgServer(binary, root, settings={"fsync": "off", "synchronous_commit": "off",
                                              "full_page_writes": "off", **(settings or {})})
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise


def _missing(reason: str) -> None:
    """Skip, or fail when CI requires the extras (SEGCLI_REQUIRE_EXTRAS=1)."""
    import pytest

    if os.environ.get("SEGCLI_REQUIRE_EXTRAS") == "1":
        pytest.fail(f"{reason} (SEGCLI_REQUIRE_EXTRAS=1)")
    pytest.skip(reason)


def pg_fixture():  # type: ignore[no-untyped-def]
    """Session fixture body: one server for every test that asks for ``pg``; stopped at the
    end of the session, whether the tests passed or not."""
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    except ImportError:
        _missing("the postgres extra is not installed: pip install -e '.[test,postgres]'")
    if server_bin() is None:
        _missing("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    srv = start_server()
    print(srv.uri(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
