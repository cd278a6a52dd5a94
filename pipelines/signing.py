"""Model signatures in the OpenSSF Model Signing format, key-based, with no network at all.

Each model file is signed on its own (the ``model-signing`` package: an in-toto statement
naming the file and its sha256, in a DSSE envelope inside a Sigstore bundle), signed with an
elliptic-curve private key (PEM). The key is ``TIDELINE_SIGNING_KEY`` (a path) when set,
else one generated on first use into ``$TIDELINE_HOME/signing/`` (mode 0600). Sigstore's
keyless path, which talks to the internet, is never used.

Verifiers trust ``TIDELINE_SIGNING_PUBLIC_KEY`` (one path, or several separated by ``:``
so that a rotated key's models keep loading). Without it they trust the keys of the state
folder: the public half of ``TIDELINE_SIGNING_KEY`` when it is set, the generated key's
public half, and every ``signing/trusted/*.pub`` (where a deployment that signs with
``TIDELINE_SIGNING_KEY`` leaves its public half, so that a service sharing the state folder
trusts it too). A key shipped inside an audit pack is never trusted, unless
``TIDELINE_TRUST_PACK_KEY=1`` asks for integrity-only checks. Keys are compared by the
sha256 of their re-serialized public key (PEM, SubjectPublicKeyInfo): the hint that
signatures carry, whatever the line endings of the file.

A signature names the files ``model_<variant>.onnx`` and ``provenance.json`` and ignores
``manifest.json`` and ``model.sig``, so an edge bundle folder verifies with the package's
own command line: ``model_signing verify key --signature model.sig --public_key key.pub
<folder>``.

``model_signing`` takes about half a second to import: it is imported inside the functions
that sign or verify, never on the cache-hit path.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SIGNING_KEY_ENV = "TIDELINE_SIGNING_KEY"
PUBLIC_KEY_ENV = "TIDELINE_SIGNING_PUBLIC_KEY"
TRUST_PACK_KEY_ENV = "TIDELINE_TRUST_PACK_KEY"
SIGNATURE_FILE = "model.sig"
# Files of an edge bundle folder that the signature does not cover.
UNSIGNED_FILES = ("manifest.json", SIGNATURE_FILE)
GENERATED_KEY = "model_signing_key.pem"
GENERATED_PUBLIC_KEY = "model_signing_key.pub"
TRUSTED_FOLDER = "trusted"  # under signing/: public keys of signers the state folder trusts


class SignatureError(ValueError):
    """A signature that does not verify, or a key that cannot be used (says which and why)."""


@dataclass(frozen=True)
class SigningKey:
    """The private key that signs, where it came from, and its public half (PEM)."""

    path: Path
    public_pem: bytes
    source: str  # "TIDELINE_SIGNING_KEY" or "generated"

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_pem)


def key_fingerprint(public_pem: bytes) -> str:
    """sha256 of the public key's re-serialized PEM: the key hint that signatures carry."""
    try:
        return hashlib.sha256(public_key_pem(public_pem, "public key")).hexdigest()
    except SignatureError:
        return hashlib.sha256(public_pem).hexdigest()


def public_key_pem(pem: bytes, where: str) -> bytes:
    """A public key (PEM) re-serialized as ``model_signing`` hashes it for the key hint.

    Raises:
        SignatureError: ``where`` holds no PEM public key.
    """
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{where}: not a PEM public key ({exc}); give the signer's public "
                             "key (openssl ec -pubout)") from None
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def trust_pack_key() -> bool:
    """``TIDELINE_TRUST_PACK_KEY=1``: with no trusted key, check against the pack's own key."""
    return os.environ.get(TRUST_PACK_KEY_ENV, "").lower() in ("1", "true", "yes")


def no_trusted_key(name: str) -> str:
    """The one line that says a signature cannot be checked here and what to set."""
    return (f"{name}: no trusted public key to verify its signature with; set "
            f"{PUBLIC_KEY_ENV} to the signer's public key (PEM), or {TRUST_PACK_KEY_ENV}=1 to "
            "check integrity only against the key inside the audit pack")


def _key_folder(state: Path) -> Path:
    return state / "signing"


def _public_pem(private_pem: bytes, where: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{where}: not an unencrypted PEM private key ({exc}); give an "
                             "elliptic-curve key (openssl ecparam -name prime256v1 -genkey "
                             "-noout | openssl pkcs8 -topk8 -nocrypt)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in (
            "secp256r1", "secp384r1", "secp521r1"):
        raise SignatureError(f"{where}: the key must be an elliptic-curve key on P-256, P-384 "
                             "or P-521 (what OpenSSF model signing supports)")
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _create_exclusive(path: Path, data: bytes, mode: int) -> bool:
    """Write a file that must not exist yet, atomically; False when another writer won."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails when the name exists, unlike a rename
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _generate(state: Path) -> Path:
    """The state folder's key pair, generated the first time (0600, never overwritten)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = _key_folder(state)
    private = folder / GENERATED_KEY
    if not private.exists():
        folder.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        _create_exclusive(private, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), 0o600)
    public = folder / GENERATED_PUBLIC_KEY
    pem = _public_pem(private.read_bytes(), str(private))
    if not public.is_file() or public.read_bytes() != pem:
        # Derived from the private key: writers racing here all write the same bytes.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{public.name}.tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.chmod(tmp, 0o644)
        os.replace(tmp, public)
    return private


def signing_key(state: Path) -> SigningKey:
    """The key that signs: ``TIDELINE_SIGNING_KEY``, else the state folder's (made if absent).

    Raises:
        SignatureError: the configured key is missing or not a supported key.
    """
    configured = os.environ.get(SIGNING_KEY_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise SignatureError(f"{SIGNING_KEY_ENV}={configured}: no such file; point it at "
                                 "an elliptic-curve private key (PEM) or unset it to use a "
                                 "key generated in the state folder")
        return SigningKey(path, _public_pem(path.read_bytes(), str(path)), SIGNING_KEY_ENV)
    path = _generate(state)
    return SigningKey(path, _public_pem(path.read_bytes(), str(path)), "generated")


def trusted_public_keys(state: Path) -> list[bytes]:
    """The public keys verifiers trust (re-serialized PEM), as described above; may be empty.

    Raises:
        SignatureError: ``TIDELINE_SIGNING_PUBLIC_KEY`` names a file that is not there or
            not a public key.
    """
    listed = os.environ.get(PUBLIC_KEY_ENV)
    if listed:
        keys = []
        for item in filter(None, listed.split(os.pathsep)):
            path = Path(item).expanduser()
            if not path.is_file():
                raise SignatureError(f"{PUBLIC_KEY_ENV}: {item}: no such file; list the public "
                                     "keys (PEM) whose signatures are trusted")
            keys.append(public_key_pem(path.read_bytes(), f"{PUBLIC_KEY_ENV}: {item}"))
        return keys
    keys = []
    configured = os.environ.get(SIGNING_KEY_ENV)
    if configured and Path(configured).expanduser().is_file():
        path = Path(configured).expanduser()
        keys.append(_public_pem(path.read_bytes(), str(path)))
    folder = _key_folder(state)
    if (folder / GENERATED_PUBLIC_KEY).is_file():
        keys.append(public_key_pem((folder / GENERATED_PUBLIC_KEY).read_bytes(),
                                   str(folder / GENERATED_PUBLIC_KEY)))
    elif (folder / GENERATED_KEY).is_file():
        keys.append(_public_pem((folder / GENERATED_KEY).read_bytes(),
                                str(folder / GENERATED_KEY)))
    for path in sorted((folder / TRUSTED_FOLDER).glob("*.pub")):
        keys.append(public_key_pem(path.read_bytes(), str(path)))
    return list(dict.fromkeys(keys))


def register_trusted(state: Path, key: SigningKey) -> None:
    """Leave a user signing key's public half where verifiers sharing ``state`` look for keys.

    A deployment signing with ``TIDELINE_SIGNING_KEY`` calls it, so that a service that
    shares the state folder but not that variable trusts what it signs (nothing to do for
    the generated key, which is trusted there already).
    """
    if key.source == "generated":
        return
    folder = _key_folder(state) / TRUSTED_FOLDER
    path = folder / f"{key.fingerprint[:32]}.pub"
    if path.is_file() and path.read_bytes() == key.public_pem:
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(key.public_pem)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


@contextlib.contextmanager
def _workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tideline-sig-") as tmp:
        os.chmod(tmp, 0o700)
        yield Path(tmp)


def sign_files(key: SigningKey, subject: str, files: dict[str, bytes]) -> bytes:
    """The signature (Sigstore bundle JSON) of a set of files, each named in the statement.

    Args:
        key: The signing key.
        subject: The model's name in the signed statement (e.g. ``adult-v3``).
        files: The files' bytes by name (``model_int8.onnx``, ``provenance.json``).
    """
    from model_signing import hashing, signing

    with _workspace() as tmp:
        folder = tmp / subject
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        config = hashing.Config().set_ignored_paths(paths=list(UNSIGNED_FILES))
        signing.Config().set_hashing_config(config).use_elliptic_key_signer(
            private_key=key.path).sign(folder, tmp / SIGNATURE_FILE)
        return (tmp / SIGNATURE_FILE).read_bytes()


def sign_file(key: SigningKey, subject: str, name: str, data: bytes) -> bytes:
    """The signature of one file named ``name`` (see :func:`sign_files`)."""
    return sign_files(key, subject, {name: data})


def signature_hint(signature: bytes) -> str | None:
    """The fingerprint of the key a signature says it was made with (not verified)."""
    try:
        return json.loads(signature)["verificationMaterial"]["publicKey"]["hint"]
    except (ValueError, KeyError, TypeError):
        return None


def signed_files(signature: bytes) -> dict[str, str]:
    """The files and sha256 digests a signature's statement names (read, not verified)."""
    try:
        envelope = json.loads(signature)["dsseEnvelope"]
        statement = json.loads(base64.b64decode(envelope["payload"]))
        return {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
    except (ValueError, KeyError, TypeError):
        return {}


def verify_files(public_keys: list[bytes], signature: bytes, files: dict[str, bytes]) -> str:
    """Check files' bytes against their signature; returns the fingerprint of the key used.

    The key is picked from ``public_keys`` by the fingerprint the signature names; the
    signature must name exactly these files.

    Raises:
        SignatureError: one line naming the file and what failed (no trusted key made it,
            the envelope does not verify, or a file's digest is not the signed one).
    """
    from model_signing import verifying

    name = next(iter(sorted(files, key=lambda n: not n.endswith(".onnx"))), "model")
    if not public_keys:
        raise SignatureError(no_trusted_key(name))
    hint = signature_hint(signature)
    by_print = {key_fingerprint(k): k for k in public_keys}
    if hint not in by_print:
        raise SignatureError(
            f"{name}: signed with key {str(hint)[:16]}…, which is not a trusted key "
            f"({', '.join(f[:16] + '…' for f in by_print)}); add its public key to "
            f"{PUBLIC_KEY_ENV} if that signer is trusted")
    with _workspace() as tmp:
        folder = tmp / "model"
        folder.mkdir()
        for file, data in files.items():
            (folder / file).write_bytes(data)
        (tmp / "key.pub").write_bytes(by_print[hint])
        (tmp / SIGNATURE_FILE).write_bytes(signature)
        try:
            verifying.Config().use_elliptic_key_verifier(public_key=tmp / "key.pub").verify(
                folder, tmp / SIGNATURE_FILE)
        except Exception as exc:  # the package raises ValueError and crypto errors alike
            signed = signed_files(signature)
            for file, data in sorted(files.items()):
                digest = hashlib.sha256(data).hexdigest()
                if file not in signed:
                    why = f"{file} is not among the signed files ({', '.join(sorted(signed))})"
                elif signed[file] != digest:
                    why = f"sha256 {digest[:16]}… is not the signed {signed[file][:16]}…"
                else:
                    continue
                raise SignatureError(f"{file}: signature verification failed ({why})") from None
            raise SignatureError(f"{name}: signature verification failed "
                                 f"({type(exc).__name__}: {exc})") from None
    return hint


def verify_file(public_keys: list[bytes], signature: bytes, name: str, data: bytes) -> str:
    """Check one file's bytes against its signature (see :func:`verify_files`).

    Raises:
        SignatureError: as :func:`verify_files` does.
    """
    return verify_files(public_keys, signature, {name: data})
