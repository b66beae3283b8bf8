"""The one provider table. What differs between providers is data, kept here.

Facts from ../shared/reference/providers.md: the Portal form's fields, and what the
official CLI sends to the Vendor API for each provider.
"""

from __future__ import annotations

from typing import NamedTuple

#: YAML fields that hold a credential. Always ``${VAR}`` or a sops ``ENC[...]`` value.
SECRET_FIELDS = ("password", "token", "secret_access_key", "service_account_key")


# Immutable records as NamedTuples, not frozen dataclasses: validate imports this table on
# every run, and defining a frozen dataclass costs ~0.8 ms (its methods are generated code).
class AuthMode(NamedTuple):
    """One way to log in to a provider, and how it maps onto the API's fields."""

    api_auth_type: str  # the API's authType
    secret_field: str  # YAML field whose value is sent as the API's password
    username_field: str | None = None  # YAML field sent as the API's username
    fixed_username: str | None = None  # or this constant
    warning: str | None = None  # shown by validate (exit still 0)


class Provider(NamedTuple):
    name: str  # the API's provider value and the YAML `provider:`
    title: str
    default_endpoint: str | None  # None: `endpoint:` is required
    endpoint_pattern: str | None  # regex the endpoint must match, if the hosts have one
    endpoint_example: str
    auth_modes: dict[str, AuthMode]  # keyed by the YAML `auth_type:` value
    # The YAML has an `auth_type:` field only where the Portal offers a choice.
    has_auth_type_field: bool = False
    warning: str | None = None  # provider-wide warning (deprecation)
    service_account_key: bool = False  # the secret is a GCP service-account JSON key
    extra_fields: tuple[str, ...] = ()

    def auth_mode(self, auth_type: str | None) -> AuthMode:
        if auth_type is None:
            (mode,) = self.auth_modes.values()
            return mode
        return self.auth_modes[auth_type]

    def yaml_auth_type(self, api_auth_type: str) -> str | None:
        """The YAML `auth_type:` for an API authType (None where the YAML has none)."""
        for key, mode in self.auth_modes.items():
            if mode.api_auth_type == api_auth_type:
                return key if self.has_auth_type_field else None
        return None


_PASSWORD = {"password": AuthMode("password", "password", username_field="username")}

_GAR_TOKEN_WARNING = (
    "GAR token auth uses short-lived access tokens (about an hour); "
    "use auth_type: serviceaccount with a service-account key for a lasting link"
)

PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            name="ecr",
            title="Amazon ECR",
            default_endpoint=None,
            endpoint_pattern=r"^[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$",
            endpoint_example="123456789012.dkr.ecr.us-east-1.amazonaws.com",
            auth_modes={
                "accesskey": AuthMode(
                    "accesskey", "secret_access_key", username_field="access_key_id"
                )
            },
        ),
        Provider(
            name="dockerhub",
            title="Docker Hub",
            default_endpoint="index.docker.io",
            endpoint_pattern=None,
            endpoint_example="index.docker.io",
            has_auth_type_field=True,
            auth_modes={
                "password": AuthMode("password", "password", username_field="username"),
                "token": AuthMode("token", "token", username_field="username"),
            },
        ),
        Provider(
            name="ghcr",
            title="GitHub Container Registry",
            default_endpoint="ghcr.io",
            endpoint_pattern=None,
            endpoint_example="ghcr.io",
            auth_modes={"token": AuthMode("token", "token", username_field="username")},
        ),
        Provider(
            name="gar",
            title="Google Artifact Registry",
            default_endpoint=None,
            endpoint_pattern=r"^([a-z0-9-]+-docker\.pkg\.dev|pkg\.dev)$",
            endpoint_example="us-east1-docker.pkg.dev",
            has_auth_type_field=True,
            service_account_key=True,
            auth_modes={
                "serviceaccount": AuthMode(
                    "serviceaccount", "service_account_key", fixed_username="_json_key"
                ),
                "token": AuthMode(
                    "token",
                    "token",
                    fixed_username="oauth2accesstoken",
                    warning=_GAR_TOKEN_WARNING,
                ),
            },
        ),
        Provider(
            name="gcr",
            title="Google Container Registry",
            default_endpoint=None,
            endpoint_pattern=r"^([a-z]+\.)?gcr\.io$",
            endpoint_example="gcr.io",
            service_account_key=True,
            warning=(
                "Google Container Registry is deprecated by Google; "
                "move to Google Artifact Registry (provider: gar)"
            ),
            auth_modes={
                "serviceaccount": AuthMode(
                    "serviceaccount", "service_account_key", fixed_username="_json_key"
                )
            },
        ),
        Provider(
            name="quay",
            title="Quay.io",
            default_endpoint="quay.io",
            endpoint_pattern=None,
            endpoint_example="quay.io",
            auth_modes=_PASSWORD,
        ),
        Provider(
            name="nexus",
            title="Sonatype Nexus",
            default_endpoint=None,
            endpoint_pattern=None,
            endpoint_example="nexus.example.net",
            auth_modes=_PASSWORD,
        ),
        Provider(
            name="other",
            title="Other OCI registry",
            default_endpoint=None,
            endpoint_pattern=None,
            endpoint_example="registry.example.com",
            auth_modes=_PASSWORD,
        ),
    )
}
