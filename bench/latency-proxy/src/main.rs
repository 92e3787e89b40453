//! The benchmark's latency proxy: a TCP relay in front of an HTTP server that
//! holds back the start of every request by a fixed delay, as a long network
//! path would (one delay per round trip).
//!
//! Usage: bench-latency-proxy LISTEN_ADDR UPSTREAM_ADDR DELAY_MS
//!
//! It works below HTTP, so signed requests pass unchanged (the client signs
//! the proxy's host, the server checks the `Host` header it receives). A
//! "request start" is the first bytes a client sends on a connection, or the
//! first it sends after the server last answered: on a keep-alive HTTP/1.1
//! connection that is exactly once per request (twice for a request that
//! waits for `100 Continue`, as over a real network). Bytes towards the
//! client are not delayed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 {
        eprintln!("usage: bench-latency-proxy LISTEN_ADDR UPSTREAM_ADDR DELAY_MS");
        std::process::exit(2);
    }
    let delay = Duration::from_millis(args[2].parse().expect("DELAY_MS: a number"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(serve(args[0].clone(), args[1].clone(), delay));
}

async fn serve(listen: String, upstream: String, delay: Duration) {
    let listener = TcpListener::bind(&listen).await.expect("bind LISTEN_ADDR");
    println!(
        "listening on http://{} -> {upstream}, +{} ms per request",
        listener.local_addr().expect("local addr"),
        delay.as_millis()
    );
    let upstream: Arc<str> = upstream.into();
    loop {
        let (client, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => { eprintln!("accept: {e}"); continue; }
            },
            _ = tokio::signal::ctrl_c() => return,
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            match TcpStream::connect(&*upstream).await {
                Ok(server) => {
                    let _ = relay(client, server, delay).await;
                }
                Err(e) => eprintln!("connect {upstream}: {e}"),
            }
        });
    }
}

async fn relay(client: TcpStream, server: TcpStream, delay: Duration) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    // Set when the server has answered: the client's next bytes start a request.
    let answered = AtomicBool::new(true);
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from_client.read(&mut buf).await?;
            if n == 0 {
                return to_server.shutdown().await;
            }
            if answered.swap(false, Ordering::SeqCst) {
                tokio::time::sleep(delay).await;
            }
            to_server.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from_server.read(&mut buf).await?;
            if n == 0 {
                return to_client.shutdown().await;
            }
            answered.store(true, Ordering::SeqCst);
            to_client.write_all(&buf[..n]).await?;
        }
    };
    let (up, down) = tokio::join!(up, down);
    up.and(down)
}
