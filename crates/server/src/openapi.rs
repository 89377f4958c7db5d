//! The OpenAPI 3 document, generated from the handlers' annotations and the wire types.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gigawatt control plane",
        description = "Multi-tenant API of the gigawatt GPU control plane. Every request but /healthz, /readyz, /metrics and /v1/openapi.json carries `Authorization: Bearer <token>`. Every error is `{code, message, field}`.",
        license(name = "Apache-2.0")
    ),
    paths(
        http::ops::healthz, http::ops::readyz, http::ops::metrics, http::ops::openapi,
        http::admin::whoami, http::admin::create_tenant, http::admin::list_tenants,
        http::admin::create_token, http::admin::list_tokens, http::admin::revoke_token, http::admin::read_log,
        http::admin::digest,
        http::workloads::submit, http::workloads::list, http::workloads::get_one, http::workloads::cancel,
        http::workloads::complete, http::workloads::explain, http::events::stream,
        http::fleet::list_sites, http::fleet::get_site, http::fleet::set_budget, http::fleet::list_racks,
        http::fleet::list_nodes, http::fleet::get_node, http::fleet::set_node_state,
        http::enroll::enroll_node, http::enroll::agent_enroll,
        http::agents::register, http::agents::heartbeat, http::agents::ship_logs, http::agents::changes, http::agents::list_agents,
        http::agents::telemetry, http::agents::set_power_limit, http::agents::read_logs, http::agents::energy,
        http::power::schedule, http::power::list, http::power::cancel,
        http::energy::report_usage, http::energy::sites,
        http::quotas::set_quotas, http::quotas::get_quotas, http::quotas::get_quota,
        http::policies::set_policy, http::policies::get_policy,
        http::audit::key, http::audit::checkpoint, http::audit::export,
    ),
    modifiers(&Bearer),
    tags(
        (name = "workloads", description = "Submit, follow and end work"),
        (name = "fleet", description = "Sites, racks and nodes, live"),
        (name = "auth", description = "Tenants, tokens and the audit log"),
        (name = "ops", description = "Health, readiness, metrics"),
        (name = "agents", description = "The node agents' protocol, their telemetry, power limits and energy"),
        (name = "power", description = "Curtailments, power caps and alerts"),
        (name = "quotas", description = "Quotas, fair share and each tenant's place in line"),
        (name = "tenants", description = "Tenants' residency policies"),
        (name = "audit", description = "The signed, tamper-evident log: its key, checkpoints and exports"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The document served at `/v1/openapi.json`.
#[must_use]
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
