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
