//! Stanza benches: framer + parse throughput over the realistic corpus, the
//! element parser on a hostile stanza of many small elements, and
//! per-recipient serialization against the serialize-once template.

use std::io::IoSlice;
use std::sync::Arc;

use benchkit::corpus::{self, Kind};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fanout::Frame;
use stanza::{ns, EventItem, EventKind, Notification, PubsubEvent};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let mut cases: Vec<(&str, Vec<Kind>)> =
        Kind::ALL.iter().map(|k| (k.label(), vec![*k])).collect();
    cases.push(("mixed", Kind::ALL.to_vec()));
    for (label, kinds) in cases {
        let (stream, n) = corpus::stream(&kinds, corpus::STREAM_BYTES);
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function(BenchmarkId::new("framer_and_parse", label), |b| {
            b.iter(|| assert_eq!(corpus::frame_and_parse(&stream), n))
        });
    }
    g.finish();
}

/// The hostile case of the element parser: one 247 KiB stanza of empty
/// elements under 60 namespace declarations (what an unauthenticated client
/// could send before the pre-auth limit existed). Copying the namespace
/// scope per element made it cost about 0.2 s of server CPU.
fn parse_many_elements(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let decls: String = (0..60)
        .map(|i| format!(" xmlns:p{i}='urn:x:{i}'"))
        .collect();
    let mut xml = format!("<iq type='set' id='x'{decls}>");
    while xml.len() < 247 * 1024 {
        xml.push_str("<a/>");
    }
    xml.push_str("</iq>");
    g.throughput(Throughput::Bytes(xml.len() as u64));
    g.sample_size(10);
    g.bench_function("element_tree_247k_small_elements_60_decls", |b| {
        b.iter(|| {
            stanza::Element::from_stanza(xml.as_bytes())
                .unwrap()
                .children
                .len()
        })
    });
    g.finish();
}

const RECIPIENTS: usize = 1000;

fn serialize(c: &mut Criterion) {
    let mut g = c.benchmark_group("serialize");
    let entry = corpus::atom_entry(7, 300);
    let items = [EventItem {
        id: "8f3c",
        publisher: Some("jane@example.org"),
        payload: &entry,
    }];
    let event = PubsubEvent {
        node: ns::MICROBLOG,
        kind: EventKind::Items(&items),
        delay: None,
    };
    let tos: Vec<String> = (0..RECIPIENTS)
        .map(|i| format!("user{i}@example.org/phone"))
        .collect();
    let escaped: Vec<bytes::Bytes> = tos.iter().map(|t| stanza::escape_jid(t)).collect();
    g.throughput(Throughput::Elements(RECIPIENTS as u64));
    g.bench_function("per_recipient", |b| {
        b.iter(|| {
            for to in &tos {
                std::hint::black_box(stanza::event_message(
                    "jane@example.org",
                    to,
                    "n-8f3c",
                    &event,
                ));
            }
        })
    });
    g.bench_function("template", |b| {
        b.iter(|| {
            let n = Arc::new(Notification::new("jane@example.org", "n-8f3c", &event));
            for to in &escaped {
                // What the writer does per recipient: take the frame and
                // lay out the vectored write.
                let f = Frame::Notification(n.clone());
                if let Frame::Notification(n) = &f {
                    std::hint::black_box(n.parts(to).map(IoSlice::new));
                }
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = benchkit::criterion();
    targets = parse, parse_many_elements, serialize
}
criterion_main!(benches);
