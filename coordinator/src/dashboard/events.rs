//! Live updates, one server-sent-events stream per tab (`/api/events`, `?trial=ID` for a trial's
//! page): whenever the store changed, a `summary` event (the counts; snapshots, so a tab that
//! missed some loses nothing) and, for a trial, an `epochs` event with only the epoch reports that
//! are new. Epoch events carry the store's cursor as their id: a dropped stream resumes with
//! `Last-Event-ID` (or `?last=`, for a tab that opens a new stream itself) with no gap and no
//! duplicate. A comment every 15 s keeps proxies from closing an idle stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures::stream::{self, Stream};
use serde_json::json;

use super::api::series_json;
use super::Shared;

/// How often a stream looks for news.
const TICK: Duration = Duration::from_millis(500);

/// Where a stream stands.
struct Cursor {
    shared: Arc<Shared>,
    trial: Option<String>,
    /// The store's epoch rowid the tab has seen up to (its last event id).
    epochs: i64,
    /// The model version the tab was last told about.
    version: u64,
    /// Events ready to go.
    queue: Vec<Event>,
    tick: tokio::time::Interval,
}

pub async fn stream(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(query.get("last").map(String::as_str))
        .and_then(|id| id.parse::<i64>().ok());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let cursor = Cursor {
        shared,
        trial: query.get("trial").cloned(),
        // A new stream of a trial starts where the page's first read of its curves ended.
        epochs: resumed.unwrap_or(0),
        version: 0,
        queue: Vec::new(),
        tick,
    };
    Sse::new(events(cursor)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("heartbeat"))
}

fn events(cursor: Cursor) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(cursor, |mut cursor| async move {
        loop {
            if !cursor.queue.is_empty() {
                let event = cursor.queue.remove(0);
                return Some((Ok(event), cursor));
            }
            cursor.tick.tick().await;
            let (shared, trial, after, seen) =
                (cursor.shared.clone(), cursor.trial.clone(), cursor.epochs, cursor.version);
            let news =
                tokio::task::spawn_blocking(move || news(&shared, trial.as_deref(), after, seen)).await;
            match news {
                Ok(Ok(Some(news))) => {
                    cursor.version = news.version;
                    cursor.queue.push(Event::default().event("summary").data(news.summary.to_string()));
                    if let Some((epochs, newest)) = news.epochs {
                        cursor.epochs = newest;
                        cursor.queue.push(
                            Event::default().event("epochs").id(newest.to_string()).data(epochs.to_string()),
                        );
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    cursor
                        .queue
                        .push(Event::default().event("failure").data(json!({ "error": e }).to_string()));
                }
                Err(_) => return None,
            }
        }
    })
}

/// What changed for a tab.
struct News {
    version: u64,
    summary: serde_json::Value,
    /// New epoch reports of the tab's trial (as series) and the cursor after them.
    epochs: Option<(serde_json::Value, i64)>,
}

fn news(shared: &Shared, trial: Option<&str>, after: i64, seen: u64) -> Result<Option<News>, String> {
    let model = shared.fresh().map_err(|e| e.to_string())?;
    if model.version == seen {
        return Ok(None);
    }
    let mut states: HashMap<&str, u32> = HashMap::new();
    for t in &model.trials {
        *states.entry(t.state.as_str()).or_default() += 1;
    }
    let summary = json!({ "version": model.version, "total": model.trials.len(), "states": states });
    let epochs = match trial {
        Some(id) => {
            let (new, newest) = model.history(id, after).map_err(|e| e.to_string())?;
            (!new.is_empty()).then(|| (series_json(&new), newest))
        }
        None => None,
    };
    Ok(Some(News { version: model.version, summary, epochs }))
}
