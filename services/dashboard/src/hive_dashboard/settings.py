"""Dashboard settings (`HIVE_` environment variables)."""

from pydantic import Field

from hyperhive.settings import HiveSettings


class DashboardSettings(HiveSettings):
    database_url: str = Field(min_length=1, description="PostgreSQL URL of the hive's database.")
    dashboard_host: str = Field(
        "127.0.0.1", description="Where the web server listens: loopback unless you put TLS in front of it."
    )
    dashboard_port: int = Field(8420, ge=0, le=65535, description="Its port; 0 takes a free one (see the url file).")
    dashboard_secure_cookies: bool = Field(
        False, description="Mark the session cookie Secure: set it when the dashboard is served over TLS."
    )
    dashboard_session_hours: float = Field(12.0, gt=0, description="How long a session lives without a new login.")
    dashboard_login_failures: int = Field(
        5, ge=1, description="Failed logins one client may make in 15 minutes before it is refused for a while."
    )
    dashboard_trusted_proxies: str = Field(
        "",
        description="Addresses of reverse proxies whose X-Forwarded-For/-Proto to believe (comma-separated); none "
        "by default, so a local user cannot pose as another client to dodge the login limit.",
    )
    dashboard_ping_seconds: float = Field(
        15.0,
        gt=0,
        le=300,
        description="How often the event stream says it is alive; a page that hears nothing "
        "for three of these reconnects.",
    )
    dashboard_stats_days: float = Field(
        30.0,
        gt=0,
        le=3660,
        description="How long stats samples are kept in PostgreSQL; older ones are deleted every hour.",
    )
