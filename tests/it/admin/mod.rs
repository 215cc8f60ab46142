//! `sender admin`, the Integration Admin pages and their JSON API, run as a real process:
//! the API over HTTP against its OpenAPI document, and the pages in a headless Chromium.

mod api;
mod before_save;
mod browser;
mod browser_forms;
mod deliveries_browser;
mod page_states;
mod quick_start;
mod trigger_bound;
