//! OTLP sink throughput and size: demo metrics → `sink "otlp"` → a receiver,
//! beside a demo → blackhole baseline, in the same run.
//!
//! `cargo xtask bench otlp` runs it. The receivers are minimal Rust ones on
//! their own thread and runtime (a tonic gRPC service and an axum HTTP
//! handler that decode every request and count its points), so the figures
//! are the agent's cost, not a Python receiver's. Each graph runs `--events`
//! events on a single-threaded tokio runtime, `--runs` times, interleaved.
//! Beside the wall time (which includes waiting for the receiver's answer)
//! each run's CPU time on the pipeline's thread is reported: what the sink
//! costs the agent's core. A second table gives the bytes per metric point,
//! encoded by the sink's encoder and measured on the wire by the HTTP
//! receiver.

mod common;

use common::arg;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use sonde_core::event::{Event, Timestamp};
use sonde_sinks::otlp::encode::Encoder;
use sonde_sources::demo::{DemoGenerator, DemoKind};

const SOURCE: &str = r#"
source "demo" "gen" {
  rate       = 0
  count      = COUNT
  batch_size = 1000
  series     = 4
}
"#;

const GRAPHS: [(&str, &str); 5] = [
    (
        "baseline: demo → blackhole",
        r#"sink "blackhole" "out" { inputs = ["gen"] }"#,
    ),
    (
        "demo → otlp grpc, gzip",
        r#"sink "otlp" "out" {
             inputs = ["gen"]
             endpoint = "http://GRPC"
           }"#,
    ),
    (
        "demo → otlp grpc, uncompressed",
        r#"sink "otlp" "out" {
             inputs = ["gen"]
             endpoint = "http://GRPC"
             compression = "none"
           }"#,
    ),
    (
        "demo → otlp http/protobuf, gzip",
        r#"sink "otlp" "out" {
             inputs = ["gen"]
             endpoint = "http://HTTP"
             protocol = "http/protobuf"
           }"#,
    ),
    (
        "demo → otlp grpc, gzip, 4 requests in flight",
        r#"sink "otlp" "out" {
             inputs = ["gen"]
             endpoint = "http://GRPC"
             request { concurrency = 4 }
           }"#,
    ),
];

/// What the receivers saw.
#[derive(Clone, Default)]
struct Counts {
    points: Arc<AtomicU64>,
    wire_bytes: Arc<AtomicU64>,
}

fn points(request: &ExportMetricsServiceRequest) -> u64 {
    let per_metric = |d: &Option<Data>| match d {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        _ => 0,
    };
    let resources = request.resource_metrics.iter();
    resources
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| per_metric(&m.data) as u64)
        .sum()
}

#[tonic::async_trait]
impl MetricsService for Counts {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.points.fetch_add(points(request.get_ref()), Ordering::Relaxed);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn http_export(
    axum::extract::State(counts): axum::extract::State<Counts>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Vec<u8> {
    counts.wire_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    let mut decoded = Vec::new();
    let body: &[u8] = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut decoded)
            .unwrap();
        &decoded
    } else {
        &body
    };
    let request = ExportMetricsServiceRequest::decode(body).unwrap();
    counts.points.fetch_add(points(&request), Ordering::Relaxed);
    ExportMetricsServiceResponse::default().encode_to_vec()
}

/// Starts both receivers on their own thread; returns their addresses.
fn start_receivers(counts: Counts) -> (SocketAddr, SocketAddr) {
    let grpc = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addresses = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            grpc.set_nonblocking(true).unwrap();
            http.set_nonblocking(true).unwrap();
            let app = axum::Router::new()
                .route("/v1/metrics", axum::routing::post(http_export))
                .with_state(counts.clone());
            let http = tokio::net::TcpListener::from_std(http).unwrap();
            tokio::spawn(async move { axum::serve(http, app).await.unwrap() });
            let service = MetricsServiceServer::new(counts)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .max_decoding_message_size(64 << 20);
            let grpc = tokio::net::TcpListener::from_std(grpc).unwrap();
            let incoming = futures::stream::unfold(grpc, |listener| async move {
                let accepted = listener.accept().await.map(|(stream, _)| stream);
                Some((accepted, listener))
            });
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
    });
    addresses
}

/// CPU time of the calling thread: the pipeline's whole cost (the sink,
/// its encoding and its client connection run on this thread's runtime),
/// without the receiver's decoding or the time other processes held the core.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall time and the pipeline thread's CPU time of one run.
fn run_once(sink: &str, events: u64, addresses: (SocketAddr, SocketAddr)) -> (Duration, Duration) {
    let text = format!("{}{sink}", SOURCE.replace("COUNT", &events.to_string()))
        .replace("GRPC", &addresses.0.to_string())
        .replace("HTTP", &addresses.1.to_string());
    let cpu = thread_cpu_time();
    // The receivers run on their own threads: sleep rather than spin.
    let wall = common::run_to_completion(&text, Some(Duration::from_micros(200)));
    (wall, thread_cpu_time() - cpu)
}

/// Bytes per point of one demo batch (1000 gauges, 4 series), as encoded.
fn encoded_sizes() -> (f64, f64) {
    let generator = DemoGenerator::new(DemoKind::Metric, 4, "bench".into());
    let now = Timestamp::now();
    let batch: Vec<Event> = (0..1000).map(|s| generator.event(s, now)).collect();
    let encoder = Encoder::new(&Default::default(), "bench".into(), usize::MAX);
    let body = encoder.encode(&batch).remove(0).into_body();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzip, &body).unwrap();
    let gzipped = gzip.finish().unwrap();
    (body.len() as f64 / 1000.0, gzipped.len() as f64 / 1000.0)
}

fn main() {
    let events: u64 = arg("--events", "500000").parse().unwrap();
    let runs: usize = arg("--runs", "5").parse().unwrap();
    let out = std::path::PathBuf::from(arg("--out", "target/bench"));
    let counts = Counts::default();
    let addresses = start_receivers(counts.clone());
    std::thread::sleep(Duration::from_millis(200));
    let _ = run_once(GRAPHS[1].1, events / 10, addresses); // warm-up: connections, allocator

    let mut times: Vec<Vec<f64>> = vec![Vec::new(); GRAPHS.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); GRAPHS.len()];
    let mut http_bytes = 0u64;
    for run in 0..runs {
        for (i, (name, sink)) in GRAPHS.iter().enumerate() {
            let (points, bytes) = (
                counts.points.load(Ordering::Relaxed),
                counts.wire_bytes.load(Ordering::Relaxed),
            );
            let (wall, thread) = run_once(sink, events, addresses);
            times[i].push(wall.as_secs_f64());
            cpu[i].push(thread.as_secs_f64());
            if i > 0 {
                // Every event arrived: the figures are for delivered data.
                assert_eq!(
                    counts.points.load(Ordering::Relaxed) - points,
                    events,
                    "{name}: points lost"
                );
            }
            http_bytes += counts.wire_bytes.load(Ordering::Relaxed) - bytes;
        }
        eprintln!("run {}/{runs} done", run + 1);
    }

    let stats = |v: &Vec<f64>| common::spread(v);
    let baseline = stats(&times[0]).1;
    let cpu_baseline = stats(&cpu[0]).1;
    let mut table = format!(
        "### OTLP sink throughput ({events} metric events per run, batches of 1000, {runs} interleaved runs, \
         sink on one core, Rust receiver on another thread)\n\n\
         | graph | events/s (median) | ns/event min / median / max | time vs baseline | pipeline-thread CPU ns/event (median) | CPU vs baseline |\n\
         |---|---|---|---|---|---|\n"
    );
    let mut json = Vec::new();
    let mut figures = Vec::new();
    let ns = |t: f64| t * 1e9 / events as f64;
    let ns_runs = |v: &Vec<f64>| v.iter().map(|t| ns(*t)).collect::<Vec<_>>();
    for (i, (name, _)) in GRAPHS.iter().enumerate() {
        let (min, median, max) = stats(&times[i]);
        // Gated by the sink thread's CPU time against the baseline's: the
        // wall time also waits on the receiver thread, whose scheduling on
        // a 2-vCPU VM moved the uncompressed gRPC ratio by 71 % between two
        // quiet runs of the same code (CPU ratio: 11 %).
        figures.push(if i == 0 {
            common::Figure::new(*name, "CPU ns/event", &ns_runs(&cpu[i]))
        } else {
            common::Figure::against(*name, "CPU ns/event", &ns_runs(&cpu[i]), &ns_runs(&cpu[0]))
        });
        let cpu_median = stats(&cpu[i]).1;
        table.push_str(&format!(
            "| {name} | {:.2} M | {:.0} / {:.0} / {:.0} | {:.2}× | {:.0} | {:.2}× |\n",
            events as f64 / median / 1e6,
            ns(min),
            ns(median),
            ns(max),
            median / baseline,
            ns(cpu_median),
            cpu_median / cpu_baseline
        ));
        json.push(serde_json::json!({
            "graph": name, "events": events, "runs": runs, "seconds": times[i],
            "events_per_second_median": events as f64 / median,
            "ns_per_event": { "min": ns(min), "median": ns(median), "max": ns(max) },
            "ratio_to_baseline": median / baseline,
            "cpu_ns_per_event_median": ns(cpu_median),
            "cpu_ratio_to_baseline": cpu_median / cpu_baseline,
        }));
    }
    let (protobuf, gzip) = encoded_sizes();
    let wire = http_bytes as f64 / (events as f64 * runs as f64);
    table.push_str(&format!(
        "\n| bytes per metric point (demo gauge, 2 attributes, 4 series) | bytes |\n|---|---|\n\
         | protobuf, one 1000-point request | {protobuf:.1} |\n\
         | gzip, one 1000-point request | {gzip:.1} |\n\
         | on the wire, http/protobuf gzip (measured by the receiver) | {wire:.1} |\n"
    ));
    json.push(serde_json::json!({
        "bytes_per_point": { "protobuf": protobuf, "gzip": gzip, "http_gzip_wire": wire }
    }));
    println!("{table}");
    common::write_report(&out, "otlp", &table, &figures, serde_json::Value::Array(json));
}
