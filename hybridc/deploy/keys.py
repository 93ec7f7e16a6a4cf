"""CURVE keys for the links of a build: who may send a stage its inputs.

`hybridc keys BUILD -o KEYS` writes one key pair per stage and one for the client in
pyzmq's certificate format (`NAME.key` public, `NAME.key_secret` secret, mode 0600). A
stage served with `--keys KEYS` listens as a CURVE server (ZeroMQ's CurveZMQ: every
frame encrypted and authenticated) and runs a ZAP authenticator that admits only the
public keys of the producers that feed it; the Inbox then accepts a frame for an input
only from the key that produces that input (ZeroMQ hands the authenticated key to each
frame as its User-Id, so what the frame says about itself does not matter). Its outgoing
links are CURVE clients with its own key pair and the receiver's public key.

A key directory is read as untrusted input: a missing or malformed file, or a secret
readable by others, is refused with the file named. On a machine that serves one stage, only
that stage's secret and the public keys of its peers need to be present.
"""

import os
import stat
from pathlib import Path

from ..errors import InputError, OutputError
from . import links

PUBLIC, SECRET = ".key", ".key_secret"


def parties(manifest) -> list:
    """Who holds a key pair: every stage, then the client."""
    return [stage.name for stage in manifest.stages] + [links.CLIENT]


def create(manifest, directory) -> list:
    """One key pair per party in `directory` (created; refused if it holds key files already).
    Returns the paths written."""
    import zmq.auth

    directory = Path(directory)
    if directory.exists() and any(directory.glob(f"*{PUBLIC}*")):
        raise OutputError(f"{directory} already holds keys; write a new key set to an empty directory (keys "
                          "replaced in place would lock out every stage still holding the old ones).")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = []
    for name in parties(manifest):
        public, secret = zmq.auth.create_certificates(str(directory), name)
        os.chmod(secret, 0o600)
        written += [Path(public), Path(secret)]
    return written


class KeySet:
    """The keys one party (a stage, or the client) uses: its own pair and its peers' public keys."""

    def __init__(self, directory, party: str):
        self.directory, self.party = Path(directory), party
        if not self.directory.is_dir():
            raise InputError(f"--keys {self.directory} is not a directory. Write a key set with "
                             "`hybridc keys BUILD -o DIR`.")
        self.public, self.secret = self._load(party, secret=True)

    def _load(self, name: str, secret: bool = False):
        import zmq.auth

        path = self.directory / f"{name}{SECRET if secret else PUBLIC}"
        if not path.is_file():
            raise InputError(f"The key set {self.directory} has no {path.name}, the {'secret' if secret else 'public'}"
                             f" key of `{name}`. Copy it from the directory `hybridc keys` wrote.")
        if secret and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InputError(f"{path} is readable by other users (mode {stat.S_IMODE(path.stat().st_mode):o}); a "
                             f"secret key must not be. Run `chmod 600 {path}`.")
        try:
            public, secret_key = zmq.auth.load_certificate(str(path))
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path} is not a CURVE certificate pyzmq can read ({exc}).") from None
        if len(public or b"") != 40 or (secret and len(secret_key or b"") != 40):
            raise InputError(f"{path} does not hold a 40-character z85 CURVE key.")
        return public, secret_key

    def public_key(self, name: str) -> bytes:
        """The z85 public key of another party."""
        return self._load(name)[0]

    def serve(self, socket, context, producers) -> object:
        """Make `socket` a CURVE server that admits only `producers`' keys; returns the running
        authenticator (stop it when the socket closes)."""
        from zmq.auth.thread import ThreadAuthenticator

        allowed = {self.public_key(name): name for name in producers}
        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        authenticator.configure_curve_callback("*", credentials_provider=_Admit(allowed))
        socket.curve_secretkey, socket.curve_publickey = self.secret, self.public
        socket.curve_server = True
        return authenticator

    def connect_to(self, socket, server: str) -> None:
        """Make `socket` a CURVE client of the party `server`."""
        socket.curve_secretkey, socket.curve_publickey = self.secret, self.public
        socket.curve_serverkey = self.public_key(server)

    def producer_ids(self, link_list) -> dict:
        """{port: the User-Id (z85 public key) a frame for that input must carry}."""
        return {link.port: self.public_key(link.source).decode("ascii") for link in link_list}


class _Admit:
    """ZAP credentials provider: a CURVE client is admitted iff its key is one of `allowed`."""

    def __init__(self, allowed: dict):
        self.allowed = allowed

    def callback(self, domain, key) -> bool:
        return bytes(key) in self.allowed


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]", "")


def is_loopback(address: str) -> bool:
    host = address.removeprefix("tcp://").rpartition(":")[0]
    return host in LOOPBACK or host.startswith("127.")


__all__ = ["KeySet", "create", "is_loopback", "parties"]
