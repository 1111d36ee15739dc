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
    pub connections: Arc<AtomicU64>,
}

impl Proxy {
    /// Forwards 127.0.0.1:<port> to `upstream` (host:port).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let connections = Arc::new(AtomicU64::new(0));
        let (d, g, n, up) = (
            down.clone(),
            generation.clone(),
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
                let Ok(server) = TcpStream::connect(&up).await else {
                    continue;
                };
                n.fetch_add(1, Ordering::SeqCst);
                let mut cut = g.subscribe();
                tokio::spawn(async move {
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            down,
            generation,
            connections,
        }
    }

    /// Closes every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// A `mysql://` URL for the proxy. `prefer_socket=false`: otherwise the driver
    /// notices the server is local and switches to its Unix socket, around the proxy.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}?prefer_socket=false", self.port)
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
