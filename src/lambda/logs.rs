//! JSON logs on stdout, as CloudWatch expects from Lambda; level from `RUST_LOG`. Every line
//! carries the spans it was written in (a callback's or a copy's `trace_id` and `task_id`).

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .with_current_span(false)
        .with_span_list(true)
        .without_time()
        .init();
}
