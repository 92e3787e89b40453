//! The benchmark's S3-protocol server: s3s-fs (a bucket = a sub-folder of
//! ROOT) behind SigV4 (`SimpleAuth`, one fixed test key), path-style, on a
//! fixed address — the same server the test suite runs in-process
//! (tests/it/harness/s3.rs), as its own process so its CPU can be measured.
//!
//! Usage: bench-s3-server ROOT ADDR ACCESS_KEY SECRET_KEY [WORKER_THREADS]
//!
//! `TCP_NODELAY` is set on every accepted socket: s3s-fs writes GET bodies in
//! 4 KiB pieces, and with Nagle on each GET waits ~40 ms for the client's
//! delayed ACK.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: bench-s3-server ROOT ADDR ACCESS_KEY SECRET_KEY [WORKER_THREADS]");
        std::process::exit(2);
    }
    let threads: usize = args
        .get(4)
        .map(|t| t.parse().expect("WORKER_THREADS: a number"))
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(serve(&args[0], &args[1], &args[2], &args[3]));
}

async fn serve(root: &str, addr: &str, access_key: &str, secret_key: &str) {
    let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs over ROOT (it must exist)");
    let service = {
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(access_key, secret_key));
        b.build()
    };
    let listener = TcpListener::bind(addr).await.expect("bind ADDR");
    println!("listening on http://{}", listener.local_addr().expect("local addr"));
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => { eprintln!("accept: {e}"); continue; }
            },
            _ = tokio::signal::ctrl_c() => return,
        };
        let _ = socket.set_nodelay(true);
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
