//! A loopback TCP proxy a test can cut, to make a server look down to concord without
//! stopping the server other tests share.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    /// Bumped on every cut; live connections watch it and close.
    generation: watch::Sender<u64>,
    /// While true, nothing is forwarded either way and nothing is closed: a network
    /// partition, as both ends see one (until their own timeouts).
    stalled: watch::Sender<bool>,
    pub connections: Arc<AtomicU64>,
}

impl Proxy {
    /// Forwards 127.0.0.1:<port> to `upstream` (host:port).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (stalled, _) = watch::channel(false);
        let connections = Arc::new(AtomicU64::new(0));
        let (d, g, st, n, up) = (
            down.clone(),
            generation.clone(),
            stalled.clone(),
            connections.clone(),
            upstream.to_owned(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client); // refused: the server "is down"
                    continue;
                }
                let mut cut = g.subscribe();
                let mut stall = st.subscribe();
                if *stall.borrow() {
                    // Partitioned: the client's connect hangs; nothing reaches the server.
                    tokio::spawn(async move {
                        let _held = client;
                        let _ = cut.changed().await;
                    });
                    continue;
                }
                let Ok(server) = TcpStream::connect(&up).await else {
                    continue;
                };
                n.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                        () = until_stalled(&mut stall) => {
                            // Both sockets stay open and silent until the next cut.
                            let _ = cut.changed().await;
                        }
                    }
                });
            }
        });
        Proxy {
            port,
            down,
            generation,
            stalled,
            connections,
        }
    }

    /// Stops forwarding on every connection, old and new, without closing any: to both
    /// ends the other has gone silent. [`Proxy::cut`] ends it.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Closes every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
        self.stalled.send_replace(false);
    }

    /// A `mysql://` URL for the proxy. `prefer_socket=false`: otherwise the driver
    /// notices the server is local and switches to its Unix socket, around the proxy.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}?prefer_socket=false", self.port)
    }
}

/// Resolves once the proxy stalls (never, if its sender is gone).
async fn until_stalled(stall: &mut watch::Receiver<bool>) {
    loop {
        if *stall.borrow_and_update() {
            return;
        }
        if stall.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `host:port` of a `mysql://user@host:port` URL, for [`Proxy::start`].
pub fn host_port(url: &str) -> String {
    url.rsplit('@')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned()
}
