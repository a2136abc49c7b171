"""Security primitives: API keys, OIDC bearer tokens, principals and authorization.

The gateway's application entry point authenticates each request's raw credential with
:class:`Authenticator` and checks each command or query with :func:`authorize`; nothing else
decides who a caller is or what it may do.
"""

from libs.auth.authenticate import Authenticator, AuthenticatorSettings, KeyLookup, credential_of
from libs.auth.authorize import RESERVED_NAMESPACES, Principal, authorize, is_allowed
from libs.auth.errors import Forbidden, Unauthenticated
from libs.auth.keys import IssuedKey, StoredApiKey, generate_key, hash_secret, parse_key
from libs.auth.oidc import ClaimMapping, OidcSettings, OidcValidator

__all__ = [
    "RESERVED_NAMESPACES",
    "Authenticator",
    "AuthenticatorSettings",
    "ClaimMapping",
    "Forbidden",
    "IssuedKey",
    "KeyLookup",
    "OidcSettings",
    "OidcValidator",
    "Principal",
    "StoredApiKey",
    "Unauthenticated",
    "authorize",
    "credential_of",
    "generate_key",
    "hash_secret",
    "is_allowed",
    "parse_key",
]
