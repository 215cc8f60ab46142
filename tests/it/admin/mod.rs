//! `sender admin`, the Integration Admin pages and their JSON API, run as a real process:
//! the API over HTTP against its OpenAPI document, and the pages in a headless Chromium.

mod api;
mod browser;
mod deliveries_browser;
mod trigger_bound;
