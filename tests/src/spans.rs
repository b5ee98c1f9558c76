//! Spans as a test sees them: a tracing layer that keeps the name and fields of every span that closes, for
//! tests of the spans and trace context of calls.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// A closed span: its name and fields, each as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpanRecord {
    /// The span's name (`rpc.call`, `rpc.serve`).
    pub name: String,
    /// Its fields, recorded when it was made or later.
    pub fields: BTreeMap<String, String>,
}

impl SpanRecord {
    /// The field `name`, or "" if it was never recorded.
    pub fn get(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

/// The spans closed so far, shared with the layer.
#[derive(Clone, Debug, Default)]
pub struct Spans(Arc<Mutex<Vec<SpanRecord>>>);

impl Spans {
    /// Starts collecting on this thread (until the guard is dropped); returns what is collected.
    pub fn collect() -> (Spans, DefaultGuard) {
        let spans = Spans::default();
        let subscriber = Registry::default().with(Capture(spans.clone()));
        (spans.clone(), tracing::subscriber::set_default(subscriber))
    }

    /// The closed spans named `name`, in the order they closed.
    pub fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.0
            .lock()
            .map(|s| s.iter().filter(|r| r.name == name).cloned().collect())
            .unwrap_or_default()
    }
}

struct Capture(Spans);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut record = SpanRecord {
            name: attrs.metadata().name().to_owned(),
            fields: BTreeMap::new(),
        };
        attrs.record(&mut Fields(&mut record.fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(record);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(record) = span.extensions_mut().get_mut::<SpanRecord>()
        {
            values.record(&mut Fields(&mut record.fields));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && let Some(record) = span.extensions_mut().remove::<SpanRecord>()
            && let Ok(mut spans) = self.0.0.lock()
        {
            spans.push(record);
        }
    }
}
