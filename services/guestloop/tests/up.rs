//! `guestloop up` as a person runs it: with no DATABASE_URL it starts a private PostgreSQL and
//! every service; each answers health and reflection on its port; SIGTERM stops everything,
//! PostgreSQL included, within 10 s; a second start finds the data of the first.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use guestloop_kit::ports::free_port;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

struct Ports {
    pg: u16,
    grpc: [(&'static str, u16); 5],
    http: u16,
}

fn start(data_dir: &std::path::Path, ports: &Ports) -> anyhow::Result<Child> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_guestloop"));
    command
        .arg("up")
        .env_remove("DATABASE_URL")
        .env("GUESTLOOP_DATA_DIR", data_dir)
        .env("GUESTLOOP_EMBEDDED_POSTGRES_PORT", ports.pg.to_string())
        .env("GUESTLOOP_PORTS__GATEWAY_HTTP", ports.http.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, port) in ports.grpc {
        command.env(
            format!("GUESTLOOP_PORTS__{}", name.to_uppercase()),
            port.to_string(),
        );
    }
    Ok(command.spawn()?)
}

async fn wait_until_serving(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let attempt = async {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))?
                    .connect()
                    .await?;
            let status = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?
                .into_inner()
                .status;
            anyhow::ensure!(status == 1, "status {status}");
            anyhow::Ok(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() > deadline => {
                anyhow::bail!("port {port} never served: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn listed_services(port: u16) -> anyhow::Result<Vec<String>> {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect()
        .await?;
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let response = stream
        .message()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no reflection answer"))?;
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        other => anyhow::bail!("unexpected reflection answer {other:?}"),
    }
}

fn terminate_and_time(child: &mut Child) -> anyhow::Result<Duration> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    let started = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "guestloop exited with {status}");
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            anyhow::bail!("guestloop did not stop within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn port_is_closed(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_every_service_stops_on_sigterm_and_keeps_data() -> anyhow::Result<()> {
    let data_dir = std::env::temp_dir().join(format!("guestloop-up-{}", std::process::id()));
    let ports = Ports {
        pg: free_port()?,
        grpc: [
            ("gateway", free_port()?),
            ("complaints", free_port()?),
            ("crm", free_port()?),
            ("facilities", free_port()?),
            ("audit", free_port()?),
        ],
        http: free_port()?,
    };

    let mut first = start(&data_dir, &ports)?;
    for (name, port) in ports.grpc {
        wait_until_serving(port).await?;
        let services = listed_services(port).await?;
        let package = format!("guestloop.{name}.v1.");
        assert!(
            services.iter().any(|s| s.starts_with(&package)),
            "{name}: {services:?}"
        );
    }
    // Leave something behind in the private database.
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", ports.pg);
    let pool = sqlx::PgPool::connect(&url).await?;
    sqlx::query("CREATE TABLE public.left_behind (note text)")
        .execute(&pool)
        .await?;
    sqlx::query("INSERT INTO public.left_behind VALUES ('first run')")
        .execute(&pool)
        .await?;
    pool.close().await;

    let stop_time = terminate_and_time(&mut first)?;
    println!("first run stopped in {} ms", stop_time.as_millis());
    assert!(
        stop_time < Duration::from_secs(10),
        "stopped in {stop_time:?}"
    );
    assert!(
        port_is_closed(ports.pg),
        "the private PostgreSQL stopped too"
    );
    for (_, port) in ports.grpc {
        assert!(port_is_closed(port));
    }

    let mut second = start(&data_dir, &ports)?;
    for (_, port) in ports.grpc {
        wait_until_serving(port).await?;
    }
    let pool = sqlx::PgPool::connect(&url).await?;
    let note: String = sqlx::query_scalar("SELECT note FROM public.left_behind")
        .fetch_one(&pool)
        .await?;
    assert_eq!(note, "first run");
    pool.close().await;
    terminate_and_time(&mut second)?;
    assert!(port_is_closed(ports.pg));

    // A signal during start-up still stops everything cleanly, PostgreSQL included.
    let mut third = start(&data_dir, &ports)?;
    std::thread::sleep(Duration::from_millis(300));
    let stop_time = terminate_and_time(&mut third)?;
    assert!(
        stop_time < Duration::from_secs(10),
        "stopped in {stop_time:?}"
    );
    for _ in 0..50 {
        if port_is_closed(ports.pg) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(port_is_closed(ports.pg), "no PostgreSQL left behind");
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}
