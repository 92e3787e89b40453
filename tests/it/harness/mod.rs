//! Test harness: real servers on 127.0.0.1, started or found on demand.

pub(crate) mod capture;
pub(crate) mod pg;
pub(crate) mod s3;
pub(crate) mod supabase;

/// The next connection on `listener`, with Nagle off, or `None` once
/// `stopped` fires. Both test HTTP servers accept through this: s3s-fs writes
/// GET bodies in 4 KiB pieces, and with Nagle on every GET waits ~40 ms for
/// the client's delayed ACK.
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
    stopped: &mut tokio::sync::oneshot::Receiver<()>,
    server: &str,
) -> Option<tokio::net::TcpStream> {
    loop {
        let socket = tokio::select! {
            res = listener.accept() => match res {
                Ok((socket, _)) => socket,
                Err(e) => {
                    eprintln!("{server} test server: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut *stopped => return None,
        };
        if let Err(e) = socket.set_nodelay(true) {
            eprintln!("{server} test server: TCP_NODELAY failed: {e}");
        }
        return Some(socket);
    }
}

/// A TCP relay listening on 127.0.0.1 in front of `upstream` (an
/// `http://host:port` endpoint), its tasks on the caller's runtime: each
/// client connection is handed to `handle` with a connection to upstream.
/// Dropping it stops accepting.
pub(crate) struct Relay {
    /// `127.0.0.1:<port>` of the relay.
    pub(crate) authority: String,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub(crate) async fn start<F, Fut>(upstream: &str, handle: F) -> Relay
    where
        F: Fn(tokio::net::TcpStream, tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// endpoint")
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let authority = listener.local_addr().expect("relay addr").to_string();
        let handle = std::sync::Arc::new(handle);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let handle = handle.clone();
                tokio::spawn(async move {
                    let relayed = async {
                        let server = tokio::net::TcpStream::connect(&upstream).await?;
                        client.set_nodelay(true)?;
                        server.set_nodelay(true)?;
                        handle(client, server).await
                    };
                    if let Err(e) = relayed.await {
                        eprintln!("test relay: {e}");
                    }
                });
            }
        });
        Relay { authority, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.authority)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
