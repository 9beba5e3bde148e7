//! Every conversion type's callback and every Music AI V2 webhook (tests/data/callbacks/), each
//! parsed and recorded: the files it names and their S3 keys, the data it carries, and the
//! streaming URL recorded on its conversion without ever being copied. The same callbacks leave
//! identical items in memory and in DynamoDB.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::memory::MemoryTable;
use musicgpt_webhook::app::ports::TaskStore;
use musicgpt_webhook::app::record::{Outcome, Recorder};
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::keys::KeyPrefix;
use serde_json::{Map, Value, json};

const NOW: u64 = 1_800_000_000;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/data/callbacks/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn fixtures() -> Vec<String> {
    let dir = format!("{}/tests/data/callbacks", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

fn recorder<T: TaskStore>(store: T) -> Recorder<T> {
    Recorder::new(store, KeyPrefix::default(), Duration::from_secs(86_400))
}

fn callback(name: &str) -> Callback {
    Callback::parse(fixture(name).as_bytes(), Some("application/json"))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

type Item = Map<String, Value>;

async fn items_of<T: TaskStore>(store: &T, task: &Id) -> BTreeMap<String, Item> {
    store
        .task_items(task)
        .await
        .expect("items")
        .into_iter()
        .map(|item| {
            let sk = item["sk"].as_str().unwrap_or_default().to_owned();
            (sk, item)
        })
        .collect()
}

/// (fixture, kind, the S3 keys of its files under `<task>/`, data attributes on its conversion)
/// (fixture, kind, the S3 keys of its files under `<task>/`, data on its conversion)
type Expectation = (
    &'static str,
    &'static str,
    Vec<&'static str>,
    Vec<(&'static str, Value)>,
);

fn expectations() -> Vec<Expectation> {
    vec![
        ("remix", "audio", vec!["{c}.mp3", "{c}.wav"], vec![]),
        ("extend", "audio", vec!["{c}.mp3", "{c}.wav"], vec![]),
        ("inpaint", "audio", vec!["{c}.mp3", "{c}.wav"], vec![]),
        (
            "sing-over-instrumental",
            "audio",
            vec!["{c}.mp3", "{c}.wav"],
            vec![],
        ),
        ("image-to-song", "audio", vec!["{c}.mp3", "{c}.wav"], vec![]),
        ("cover", "audio", vec!["{c}.mp3", "{c}.wav"], vec![]),
        ("voice-changer", "audio", vec!["{c}.mp3", "{c}.wav"], vec![]),
        (
            "text-to-speech",
            "audio",
            vec!["{c}.mp3", "{c}.wav"],
            vec![],
        ),
        (
            "extraction",
            "stems",
            vec![
                "{c}/stems/drums.mp3",
                "{c}/stems/instrumental.mp3",
                "{c}/stems/vocals.mp3",
                "{c}/stems/drums.wav",
                "{c}/stems/instrumental.wav",
                "{c}/stems/vocals.wav",
            ],
            vec![],
        ),
        ("denoise", "audio", vec!["{c}.mp3", "{c}.wav"], vec![]),
        ("deecho", "audio", vec!["{c}.mp3"], vec![]),
        ("dereverb", "audio", vec!["{c}.mp3"], vec![]),
        ("mastering", "audio", vec!["{c}.flac"], vec![]),
        ("cutter", "audio", vec!["{c}.ogg"], vec![]),
        ("speed-changer", "audio", vec!["{c}.wav"], vec![]),
        (
            "audio-to-midi",
            "midi",
            vec!["{c}/midi.mid", "{c}.wav", "{c}/notes.csv"],
            vec![],
        ),
        (
            "key-bpm",
            "key_bpm",
            vec!["{c}.mp3"],
            vec![
                ("key", json!("F# minor")),
                // Stored as DynamoDB keeps numbers: 128.0 is 128.
                ("bpm", json!(128)),
                (
                    "key_changes",
                    json!([{"time": 0, "key": "F# minor"}, {"time": 61.5, "key": "A major"}]),
                ),
            ],
        ),
        ("file-convert", "audio", vec!["{c}.flac"], vec![]),
        (
            "transcribe",
            "transcript",
            vec!["{c}/transcript.srt"],
            vec![
                ("language", json!("en")),
                ("transcription_format", json!("srt")),
            ],
        ),
        ("sound-generator", "audio", vec!["{c}.mp3"], vec![]),
    ]
}

#[tokio::test]
async fn every_conversion_type_is_understood_copied_under_clear_keys_and_its_data_kept() {
    for (name, kind, keys, data) in expectations() {
        let cb = callback(name);
        assert_eq!(cb.kind.label(), kind, "{name}");
        let task = cb.task_id.clone().expect("task id");
        let conversion = cb.conversion_id.clone().expect("conversion id");
        let store = MemoryTable::new();
        let outcome = recorder(store.clone())
            .record(&cb, NOW)
            .await
            .expect("recorded");
        assert!(
            matches!(outcome, Outcome::Recorded { .. }),
            "{name}: {outcome:?}"
        );
        let items = items_of(&store, &task).await;
        let mut stored: Vec<String> = items
            .values()
            .filter(|i| i["item_type"] == "ASSET")
            .map(|i| i["s3_key"].as_str().unwrap_or_default().to_owned())
            .collect();
        stored.sort();
        let mut wanted: Vec<String> = keys
            .iter()
            .map(|k| format!("{task}/{}", k.replace("{c}", conversion.as_str())))
            .collect();
        wanted.sort();
        assert_eq!(stored, wanted, "{name}");
        let conversion_item = &items[&format!("CONVERSION#{conversion}")];
        assert_eq!(conversion_item["status"], "COMPLETED", "{name}");
        for (attribute, value) in data {
            assert_eq!(conversion_item[attribute], value, "{name}: {attribute}");
        }
        let task_item = &items["TASK"];
        assert!(
            task_item["conversion_type"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_transcript_lives_in_an_item_of_its_own() {
    let cb = callback("transcribe");
    let store = MemoryTable::new();
    recorder(store.clone())
        .record(&cb, NOW)
        .await
        .expect("recorded");
    let task = cb.task_id.clone().expect("task");
    let conversion = cb.conversion_id.clone().expect("conversion");
    let items = items_of(&store, &task).await;
    let transcript = &items[&format!("TRANSCRIPT#{conversion}")];
    assert_eq!(transcript["transcript"], "Hello, and welcome to the show.");
    assert_eq!(transcript["item_type"], "TRANSCRIPT");
}

const V2: [&str; 7] = [
    "music-ai-v2-audio-1",
    "music-ai-v2-audio-2",
    "music-ai-v2-lyrics-1",
    "music-ai-v2-lyrics-2",
    "music-ai-v2-stream-1",
    "music-ai-v2-stream-2",
    "music-ai-v2-cover",
];

#[tokio::test]
async fn music_ai_v2_s_seven_webhooks_converge_in_any_order_and_the_stream_is_never_the_song() {
    let orders: [[usize; 7]; 4] = [
        [0, 1, 2, 3, 4, 5, 6],
        [4, 5, 6, 2, 3, 0, 1],
        [6, 2, 4, 0, 5, 3, 1],
        [5, 3, 1, 6, 0, 4, 2],
    ];
    let task = callback(V2[0]).task_id.expect("task");
    let mut reference: Option<BTreeMap<String, Item>> = None;
    for order in orders {
        let store = MemoryTable::new();
        let recorder = recorder(store.clone());
        for index in order {
            recorder
                .record(&callback(V2[index]), NOW)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", V2[index]));
        }
        let mut items = items_of(&store, &task).await;
        for item in items.values_mut() {
            // When the preview came is history, not state.
            item.remove("streaming_url_at");
        }
        match &reference {
            None => reference = Some(items),
            Some(expected) => assert_eq!(&items, expected, "order {order:?}"),
        }
    }
    let items = reference.expect("an order");
    let assets: Vec<&str> = items
        .values()
        .filter(|i| i["item_type"] == "ASSET")
        .filter_map(|i| i["s3_key"].as_str())
        .collect();
    assert_eq!(assets.len(), 5, "2 mp3, 2 wav, 1 cover: {assets:?}");
    assert!(
        assets
            .iter()
            .all(|k| !k.contains("m3u8") && !k.contains("stream"))
    );
    for name in ["music-ai-v2-stream-1", "music-ai-v2-stream-2"] {
        let cb = callback(name);
        let conversion = cb.conversion_id.expect("conversion");
        let item = &items[&format!("CONVERSION#{conversion}")];
        assert_eq!(item["streaming_url"], json!(cb.streaming_url), "{name}");
        assert_eq!(
            item["status"], "COMPLETED",
            "the audio's status, not the preview's"
        );
        assert!(items.contains_key(&format!("LYRICS_TIMESTAMPED#{conversion}")));
    }
}

#[tokio::test]
async fn the_streaming_url_alone_leaves_the_conversion_without_status_or_files() {
    let store = MemoryTable::new();
    let cb = callback("music-ai-v2-stream-1");
    recorder(store.clone())
        .record(&cb, NOW)
        .await
        .expect("recorded");
    let items = items_of(&store, cb.task_id.as_ref().expect("task")).await;
    let conversion = &items[&format!("CONVERSION#{}", cb.conversion_id.expect("conversion"))];
    assert!(conversion.get("status").is_none(), "{conversion:?}");
    assert_eq!(conversion["streaming_url_at"], json!(NOW));
    assert!(items.values().all(|i| i["item_type"] != "ASSET"));
}

#[tokio::test]
async fn every_fixture_writes_the_same_items_in_memory_and_in_dynamodb() {
    let memory = MemoryTable::new();
    let dynamo = DynamoTable::new(support::dynamo().await, support::fresh_table().await);
    let names = fixtures();
    assert!(names.len() >= 27, "{names:?}");
    let mut tasks = Vec::new();
    for (now, name) in (NOW..).zip(&names) {
        let cb = callback(name);
        let a = recorder(memory.clone())
            .record(&cb, now)
            .await
            .expect("memory");
        let b = recorder(dynamo.clone())
            .record(&cb, now)
            .await
            .expect("dynamodb");
        assert_eq!(a, b, "{name}");
        tasks.extend(cb.task_id);
    }
    tasks.sort();
    tasks.dedup();
    for task in &tasks {
        assert_eq!(
            memory.task_items(task).await.expect("memory"),
            dynamo.task_items(task).await.expect("dynamodb"),
            "{task}"
        );
    }
}
