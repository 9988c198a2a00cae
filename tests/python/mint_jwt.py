"""Keys, key sets and tokens for the JWT policy cases (tests/src/cases/auth.rs).

Made fresh on every run with PyJWT and cryptography (a JWT library the gateway does not use), so
no key is ever committed. Prints one JSON object:

  jwks_a    {"keys": [RSA "a", EC P-256 "ec", EC P-384 "ec384", Ed25519 "ed", HMAC secret "hs",
            RSA "c" that declares "alg": "RS512"]}
  jwks_ab   the same plus RSA "b" (the rotation)
  tokens    name -> compact JWT (see below): one valid token per algorithm the gateway
            verifies (RS256/384/512, PS256, ES256/384, EdDSA, HS256), the refused ones, and
            tokens past their exp / before their nbf by half an hour and by two hours (leeway)

Usage: mint_jwt.py ISSUER AUDIENCE
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk(public_key, kid: str, algorithm) -> dict:
    d = json.loads(algorithm.to_jwk(public_key))
    d["kid"] = kid
    d["use"] = "sig"
    return d


def main() -> None:
    issuer, audience = sys.argv[1], sys.argv[2]
    now = int(time.time())
    key_a = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_b = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_c = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_ec = ec.generate_private_key(ec.SECP256R1())
    key_ec384 = ec.generate_private_key(ec.SECP384R1())
    key_ed = ed25519.Ed25519PrivateKey.generate()
    secret = os.urandom(32)
    # Key "c" names its algorithm: it verifies RS512 tokens only, whatever a token claims.
    jwk_c = jwk(key_c.public_key(), "c", RSAAlgorithm)
    jwk_c["alg"] = "RS512"
    jwks_a = {
        "keys": [
            jwk(key_a.public_key(), "a", RSAAlgorithm),
            jwk(key_ec.public_key(), "ec", ECAlgorithm),
            jwk(key_ec384.public_key(), "ec384", ECAlgorithm),
            jwk(key_ed.public_key(), "ed", OKPAlgorithm),
            jwk(secret, "hs", HMACAlgorithm),
            jwk_c,
        ]
    }
    jwks_ab = {"keys": jwks_a["keys"] + [jwk(key_b.public_key(), "b", RSAAlgorithm)]}

    def claims(**over):
        c = {
            "sub": "alice",
            "tenant": "acme",
            "iss": issuer,
            "aud": audience,
            "iat": now,
            "exp": now + 3600,
        }
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def rs(c, kid="a", key=key_a, alg="RS256"):
        return jwt.encode(c, key, algorithm=alg, headers={"kid": kid})

    # HMAC over the RSA public key: the classic key-confusion forgery. PyJWT refuses to make
    # it (rightly), so it is signed by hand with the PEM as the HMAC secret.
    pem = key_a.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "a"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    hs_confusion = f"{head}.{body}.{b64(mac)}"
    none = jwt.encode(claims(), None, algorithm="none", headers={"kid": "a"})

    tokens = {
        "valid": rs(claims()),
        "valid_bob": rs(claims(sub="bob")),
        "valid_ps256": rs(claims(), alg="PS256"),
        "valid_rs384": rs(claims(), alg="RS384"),
        "valid_rs512": rs(claims(), alg="RS512"),
        "valid_es256": jwt.encode(claims(), key_ec, algorithm="ES256", headers={"kid": "ec"}),
        "valid_es384": jwt.encode(
            claims(), key_ec384, algorithm="ES384", headers={"kid": "ec384"}
        ),
        "valid_eddsa": jwt.encode(claims(), key_ed, algorithm="EdDSA", headers={"kid": "ed"}),
        "valid_hs256": jwt.encode(claims(), secret, algorithm="HS256", headers={"kid": "hs"}),
        "valid_rs512_declared": rs(claims(), kid="c", key=key_c, alg="RS512"),
        # A correct RS256 signature by key "c", which declares RS512: refused.
        "rs256_on_rs512_key": rs(claims(), kid="c", key=key_c, alg="RS256"),
        # HS256 signed with another secret under kid "hs".
        "hs256_wrong_secret": jwt.encode(
            claims(), os.urandom(32), algorithm="HS256", headers={"kid": "hs"}
        ),
        # For a policy with a leeway of one hour: within it, and beyond it.
        "expired_30m": rs(claims(exp=now - 1800, iat=now - 5400)),
        "expired_2h": rs(claims(exp=now - 7200, iat=now - 10800)),
        "nbf_in_30m": rs(claims(nbf=now + 1800)),
        "nbf_in_2h": rs(claims(nbf=now + 7200)),
        "expired": rs(claims(exp=now - 600, iat=now - 4200)),
        "not_yet_valid": rs(claims(nbf=now + 600)),
        "wrong_issuer": rs(claims(iss="https://evil.example")),
        "wrong_audience": rs(claims(aud="someone-else")),
        "rotated": rs(claims(), kid="b", key=key_b),
        "unknown_kid": rs(claims(), kid="zzz", key=key_b),
        "none": none,
        "hs_confusion": hs_confusion,
        "bad_signature": rs(claims(), key=key_b),
    }
    json.dump({"jwks_a": jwks_a, "jwks_ab": jwks_ab, "tokens": tokens}, sys.stdout)


if __name__ == "__main__":
    main()
