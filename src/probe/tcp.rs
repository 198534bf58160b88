//! The TCP connection every check starts with, and the `tcp` check itself.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::failure::{Failure, Progress, Step};

/// Opens the connection; refused and reset are told apart from other errors
/// because they mean "nothing listens" rather than "something is broken".
pub(crate) async fn connect(
    addr: SocketAddr,
    progress: &mut Progress,
) -> Result<TcpStream, Failure> {
    progress.at(Step::Connect);
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Failure::io(Step::Connect, &e))?;
    // Probes exchange a few short lines and wait for each answer: Nagle's
    // algorithm would only add delay.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The `tcp` check: passes once the connection is open, then closes it.
pub(crate) async fn probe(addr: SocketAddr, progress: &mut Progress) -> Result<(), Failure> {
    let mut stream = connect(addr, progress).await?;
    progress.pass("connection opened");
    let _ = stream.shutdown().await;
    Ok(())
}
