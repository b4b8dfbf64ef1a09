//! End-to-end tests of islands over libp2p: several real `evo run` processes on
//! 127.0.0.1 with a tiny config (the test's own small CIFAR-10 binary files, few steps).

// A failed unwrap is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use common::{get, poll, sha256_hex, tiny_run_args, wait_for, write_cifar10, Evo};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A node of the test experiment: an `evo run` process, killed when dropped.
type Node = Evo;

fn start(data: &Path, state: PathBuf, extra: &[&str]) -> Node {
    // Port 0: the node binds a free one and says which; `Evo::port` reads it.
    let mut args = tiny_run_args(data, &state, 0);
    args.extend([
        "--listen".into(),
        "/ip4/127.0.0.1/tcp/0".into(),
        "training.steps=20".into(),
        "evolution.population_size=4".into(),
        "evolution.initial_population=2".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Evo::spawn(&args)
}

fn get_json(port: u16, path: &str) -> Option<Value> {
    let (code, body) = get(port, path).ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

fn status(port: u16) -> Option<Value> {
    get_json(port, "/status")
}

/// The node's first full listen address.
fn address(node: &Node) -> String {
    wait_for(Duration::from_secs(60), "a listen address", || {
        status(node.port())?["listen_addrs"][0]
            .as_str()
            .map(str::to_string)
    })
}

#[test]
fn gossip_reaches_every_node_and_a_node_with_another_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 20);
    let data = dir.path().join("cifar-10-batches-bin");
    let a = start(&data, dir.path().join("a"), &[]);
    let bootstrap = address(&a);
    assert!(bootstrap.contains("/p2p/"), "{bootstrap}");
    let b = start(&data, dir.path().join("b"), &["--bootstrap", &bootstrap]);
    let c = start(&data, dir.path().join("c"), &["--bootstrap", &bootstrap]);
    let nodes = [&a, &b, &c];
    let ids: Vec<String> = nodes
        .iter()
        .map(|n| {
            wait_for(Duration::from_secs(60), "a peer id", || {
                status(n.port())?["peer_id"].as_str().map(str::to_string)
            })
        })
        .collect();
    // Every node hears of both others (C learns of B through gossip or discovery).
    for n in nodes {
        wait_for(
            Duration::from_secs(90),
            "gossip from both other islands",
            || {
                let s = status(n.port())?;
                (s["islands_known"].as_u64()? >= 2).then_some(())
            },
        );
    }
    // The experiment-wide best is the best of the three islands' bests.
    let bests: Vec<f64> = nodes
        .iter()
        .map(|n| {
            status(n.port()).unwrap()["best_fitness"]
                .as_f64()
                .unwrap_or(0.0)
        })
        .collect();
    let top = bests.iter().cloned().fold(f64::MIN, f64::max);
    wait_for(Duration::from_secs(60), "the experiment-wide best", || {
        let s = status(a.port())?;
        (s["experiment_best"]["fitness"].as_f64()? >= top - 1e-12).then_some(())
    });
    assert!(ids.iter().all(|id| id.starts_with("12D3Koo")), "{ids:?}");

    // A node whose config scores differently refuses to join, with a clear error.
    let mut odd = start(
        &data,
        dir.path().join("odd"),
        &["--bootstrap", &bootstrap, "training.steps=21"],
    );
    let (exit, stderr) = odd.wait_exit(Duration::from_secs(60), "the odd node to give up");
    assert!(!exit.success());
    assert!(stderr.contains("refused to join"), "{stderr}");
    assert!(stderr.contains("steps"), "{stderr}");

    // So does a node with the same config on other data under the same name: the
    // digest of the images loaded differs.
    let other = dir.path().join("other");
    write_cifar10(&other, 21);
    let mut odd = start(
        &other.join("cifar-10-batches-bin"),
        dir.path().join("odd-data"),
        &["--bootstrap", &bootstrap],
    );
    let (exit, stderr) =
        odd.wait_exit(Duration::from_secs(60), "the node on other data to give up");
    assert!(!exit.success());
    assert!(stderr.contains("refused to join"), "{stderr}");
    assert!(stderr.contains("data_digest"), "{stderr}");
    assert!(!stderr.contains("steps"), "{stderr}");
    // The others carry on.
    assert!(status(a.port()).is_some());
}

#[test]
fn a_peer_without_the_key_cannot_connect() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 20);
    let data = dir.path().join("cifar-10-batches-bin");
    let key1 = dir.path().join("k1");
    let key2 = dir.path().join("k2");
    std::fs::write(&key1, "11".repeat(32)).unwrap();
    std::fs::write(&key2, "22".repeat(32)).unwrap();
    let a = start(
        &data,
        dir.path().join("a"),
        &["--key-file", key1.to_str().unwrap()],
    );
    let bootstrap = address(&a);
    let friend = start(
        &data,
        dir.path().join("f"),
        &[
            "--key-file",
            key1.to_str().unwrap(),
            "--bootstrap",
            &bootstrap,
        ],
    );
    let stranger = start(
        &data,
        dir.path().join("s"),
        &[
            "--key-file",
            key2.to_str().unwrap(),
            "--bootstrap",
            &bootstrap,
        ],
    );
    wait_for(Duration::from_secs(60), "the friend to connect", || {
        (status(friend.port())?["connected_peers"].as_u64()? >= 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let s = status(stranger.port()).unwrap();
    assert_eq!(s["connected_peers"], 0, "{s}");
    assert_eq!(status(a.port()).unwrap()["connected_peers"], 1);
}

#[test]
fn a_migration_moves_an_individual_and_its_weights_intact() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 20);
    let data = dir.path().join("cifar-10-batches-bin");
    // A migrates by chance (after every reproduction), B on a schedule.
    let a = start(
        &data,
        dir.path().join("a"),
        &["migration.every=0", "migration.probability=1"],
    );
    let bootstrap = address(&a);
    let args = ["migration.every=1", "--bootstrap", &bootstrap];
    let b = start(&data, dir.path().join("b"), &args);
    // Wait for an individual to arrive on either node.
    let (port, state, arrival) = wait_for(Duration::from_secs(120), "a migration", || {
        for (node, state) in [(&a, "a"), (&b, "b")] {
            let list = get_json(node.port(), "/migrations")?;
            if let Some(m) = list.as_array()?.iter().find(|m| m["direction"] == "in") {
                return Some((node.port(), state, m.clone()));
            }
        }
        None
    });
    // The weights on disk are the ones sent: same checksum as the sender's.
    let id = arrival["id"].as_u64().unwrap();
    let weights = std::fs::read(
        dir.path()
            .join(state)
            .join(format!("individuals/{id}/weights.safetensors")),
    );
    // (It may have been killed since, its weights deleted: then the record tells.)
    if let Ok(weights) = weights {
        assert_eq!(sha256_hex(&weights), arrival["checksum"].as_str().unwrap());
    }
    let record: Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join(state)
                .join(format!("individuals/{id}/record.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(record["fitness"], arrival["fitness"]);
    assert_eq!(record["origin"]["id"], arrival["remote_id"]);
    // The receiver scored it on its own validation images before admitting it: the
    // same accuracy as its sender measured.
    assert_eq!(arrival["fitness"], arrival["claimed"], "{arrival}");
    // The sender logged it too, with the same checksum.
    let other = if port == a.port() { b.port() } else { a.port() };
    let sent = wait_for(Duration::from_secs(30), "the sender's record", || {
        get_json(other, "/migrations")?
            .as_array()?
            .iter()
            .find(|m| m["direction"] == "out" && m["checksum"] == arrival["checksum"])
            .cloned()
    });
    assert_eq!(sent["fitness"], arrival["claimed"]);
    assert_eq!(sent["id"], arrival["remote_id"]);
    // Both event logs hold it.
    for s in ["a", "b"] {
        let events = std::fs::read_to_string(dir.path().join(s).join("events.jsonl")).unwrap();
        assert!(events.contains(r#""event":"migration""#), "{s}");
    }
}

fn trained(port: u16) -> Option<u64> {
    status(port)?["individuals_trained"].as_u64()
}

#[test]
fn joining_leaving_and_dying_nodes() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 20);
    let data = dir.path().join("cifar-10-batches-bin");
    // Migration only on joining and leaving here. Every node admits whatever it is
    // handed, good or bad: replace-worst would refuse a hand-off no better than A's worst
    // member, or a pull answered only once a slow A had trained something, by when B or
    // C may be full of better members of their own.
    let quiet = ["migration.every=0", "migration.admit=replace-random"];
    let a = start(&data, dir.path().join("a"), &quiet);
    let bootstrap = address(&a);
    let join = |name: &str| {
        let mut args = quiet.to_vec();
        args.extend(["--bootstrap", &bootstrap]);
        start(&data, dir.path().join(name), &args)
    };
    let b = join("b");
    let mut c = join("c");
    for n in [&a, &b, &c] {
        wait_for(Duration::from_secs(60), "a few individuals", || {
            (trained(n.port())? >= 3).then_some(())
        });
    }
    // B and C joined a running experiment: each started from migrants pulled from A.
    for n in [&b, &c] {
        let list = wait_for(Duration::from_secs(90), "migrants on joining", || {
            let l = get_json(n.port(), "/migrations")?;
            l.as_array()?
                .iter()
                .any(|m| m["direction"] == "in")
                .then_some(l)
        });
        assert!(!list.as_array().unwrap().is_empty());
    }

    // C dies abruptly: A and B carry on.
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    let (ta, tb) = (trained(a.port()).unwrap(), trained(b.port()).unwrap());
    wait_for(Duration::from_secs(60), "A and B to keep training", || {
        (trained(a.port())? > ta && trained(b.port())? > tb).then_some(())
    });

    // B leaves cleanly: it hands its best to A and exits.
    let b_id = status(b.port()).unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut b = b;
    let term = Command::new("kill")
        .args(["-TERM", &b.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let (exit, b_log) = b.wait_exit(Duration::from_secs(40), "B to leave");
    assert!(exit.success(), "{exit:?}\n{b_log}");
    // A scores what B handed over, then admits it.
    let admitted = poll(Duration::from_secs(60), || {
        get_json(a.port(), "/migrations")?
            .as_array()?
            .iter()
            .any(|m| m["direction"] == "in" && m["peer"] == b_id.as_str())
            .then_some(())
    });
    assert!(
        admitted.is_some(),
        "A did not admit B's hand-off\n--- B said:\n{b_log}\n--- A said:\n{}",
        a.log()
    );
    let events = std::fs::read_to_string(dir.path().join("b/events.jsonl")).unwrap();
    assert!(events.contains("stopped by SIGTERM"), "{events}");
    assert!(status(a.port()).is_some());
}

/// A hostile peer, in this process: it joins a real node's topic and sends garbage
/// gossip. The node rejects it, disconnects the sender and goes on. (Invalid requests:
/// `lying_invalid_and_oversized_requests_get_their_senders_penalized`.)
#[test]
fn garbled_gossip_is_rejected_and_its_sender_penalized() {
    use libp2p::swarm::SwarmEvent;
    use protocol::behaviour::{build_swarm, topic, EvoBehaviourEvent, SwarmOptions};

    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 20);
    let data = dir.path().join("cifar-10-batches-bin");
    let node = start(&data, dir.path().join("a"), &[]);
    let addr = address(&node);
    let experiment = status(node.port()).unwrap()["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let mut swarm = build_swarm(key, &SwarmOptions::default()).unwrap();
    let topic = topic(&experiment);
    swarm.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    let mut sent_gossip = false;
    let disconnected = expect_disconnect(swarm, &addr, |swarm, _, event| {
        if !sent_gossip
            && matches!(
                event,
                SwarmEvent::Behaviour(EvoBehaviourEvent::Gossipsub(
                    libp2p::gossipsub::Event::Subscribed { .. }
                ))
            )
        {
            // Well-formed gossip whose payload is not an evo message.
            let _ = swarm
                .behaviour_mut()
                .gossipsub
                .publish(topic.clone(), b"EVO\x00\x01\x01garbage".to_vec());
            sent_gossip = true;
        }
        sent_gossip
    });
    assert!(sent_gossip, "the hostile peer never saw the node subscribe");
    assert!(disconnected, "the node did not disconnect the hostile peer");
    // The hostile peer saw its connection close; the node counts the penalty and the
    // closed connection when its own swarm reports them, which may come a moment later.
    let s = wait_for(
        Duration::from_secs(10),
        "the penalty and the disconnection",
        || {
            let s = status(node.port())?;
            (s["penalized_peers"].as_u64()? >= 1 && s["connected_peers"].as_u64()? == 0)
                .then_some(s)
        },
    );
    // The node is alive and still training.
    let before = s["individuals_trained"].as_u64().unwrap();
    wait_for(Duration::from_secs(60), "more training", || {
        (status(node.port())?["individuals_trained"].as_u64()? > before).then_some(())
    });
}

/// A hostile peer in this process: `swarm` dials `addr` and sees every event through
/// `act`, which does its mischief and says whether it is done; then the peer waits for
/// the node to disconnect it: whether it did within 30 s.
fn expect_disconnect<B: libp2p::swarm::NetworkBehaviour>(
    mut swarm: libp2p::Swarm<B>,
    addr: &str,
    mut act: impl FnMut(
        &mut libp2p::Swarm<B>,
        libp2p::PeerId,
        &libp2p::swarm::SwarmEvent<B::ToSwarm>,
    ) -> bool,
) -> bool {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;

    let addr: libp2p::Multiaddr = addr.parse().unwrap();
    let node_peer = match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
        _ => panic!("no peer id in {addr}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        swarm.dial(addr.clone()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut done = false;
        while tokio::time::Instant::now() < deadline {
            let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_millis(200), swarm.next()).await
            else {
                continue;
            };
            if let SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } = &event
            {
                if *peer_id == node_peer && done {
                    return true;
                }
            }
            done = act(&mut swarm, node_peer, &event) || done;
        }
        false
    })
}

/// Sends `send`'s message once connected to the node (for [`expect_disconnect`]).
fn once_connected<B: libp2p::swarm::NetworkBehaviour>(
    send: impl FnOnce(&mut libp2p::Swarm<B>, libp2p::PeerId),
) -> impl FnMut(&mut libp2p::Swarm<B>, libp2p::PeerId, &libp2p::swarm::SwarmEvent<B::ToSwarm>) -> bool
{
    let mut send = Some(send);
    move |swarm, node, event| {
        if let libp2p::swarm::SwarmEvent::ConnectionEstablished { peer_id, .. } = event {
            if *peer_id == node {
                if let Some(send) = send.take() {
                    send(swarm, node);
                }
            }
        }
        send.is_none()
    }
}

/// [`expect_disconnect`] for a well-formed `request` from a peer speaking evo's protocols,
/// sent as soon as it is connected.
fn request_and_expect_disconnect(addr: &str, request: protocol::wire::Request) -> bool {
    use protocol::behaviour::{build_swarm, EvoBehaviour, SwarmOptions};
    let key = libp2p::identity::Keypair::generate_ed25519();
    let swarm = build_swarm(key, &SwarmOptions::default()).unwrap();
    let send = once_connected(move |swarm: &mut libp2p::Swarm<EvoBehaviour>, peer| {
        swarm
            .behaviour_mut()
            .exchange
            .send_request(&peer, request.into());
    });
    expect_disconnect(swarm, addr, send)
}

/// A peer that sends `request` first with no hello (the node refuses it), then after a
/// hello that copies the node's own settings, and waits to be disconnected: whether the
/// request without a hello was refused (and the reason), and whether the node then
/// disconnected the peer.
fn request_after_hello_and_expect_disconnect(
    addr: &str,
    request: protocol::wire::Request,
) -> (Option<String>, bool) {
    use libp2p::request_response::{Event, Message};
    use libp2p::swarm::SwarmEvent;
    use protocol::behaviour::{build_swarm, EvoBehaviourEvent, SwarmOptions};
    use protocol::codec::RequestFrame;
    use protocol::wire::{Request, Response};

    let key = libp2p::identity::Keypair::generate_ed25519();
    let swarm = build_swarm(key, &SwarmOptions::default()).unwrap();
    let mut early = None;
    let mut node_hello = None;
    let mut refused = None;
    let mut our_hello = None;
    let mut sent = false;
    let disconnected = expect_disconnect(swarm, addr, |swarm, node, event| {
        let SwarmEvent::Behaviour(EvoBehaviourEvent::Exchange(event)) = event else {
            if matches!(event, SwarmEvent::ConnectionEstablished { peer_id, .. } if *peer_id == node)
                && early.is_none()
            {
                let r = request.clone().into();
                early = Some(swarm.behaviour_mut().exchange.send_request(&node, r));
            }
            return sent;
        };
        match event {
            Event::Message {
                message:
                    Message::Request {
                        request: RequestFrame::Valid(hello @ Request::Hello { .. }),
                        ..
                    },
                ..
            } => node_hello = Some(hello.clone()),
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if Some(*request_id) == early {
                    if let Response::Refused { reason } = response {
                        refused = Some(reason.clone());
                    }
                } else if Some(*request_id) == our_hello
                    && matches!(
                        response,
                        Response::Hello {
                            compatible: true,
                            ..
                        }
                    )
                    && !sent
                {
                    let r = request.clone().into();
                    swarm.behaviour_mut().exchange.send_request(&node, r);
                    sent = true;
                }
            }
            _ => {}
        }
        if refused.is_some() && our_hello.is_none() {
            if let Some(Request::Hello {
                experiment,
                fingerprint,
                settings_json,
                ..
            }) = &node_hello
            {
                let hello = Request::Hello {
                    experiment: experiment.clone(),
                    fingerprint: fingerprint.clone(),
                    settings_json: settings_json.clone(),
                    island: "liar".into(),
                };
                our_hello = Some(
                    swarm
                        .behaviour_mut()
                        .exchange
                        .send_request(&node, hello.into()),
                );
            }
        }
        sent
    });
    (refused, disconnected)
}

/// A hostile codec for evo's request protocol: it writes a request's bytes as they are,
/// with no length prefix of its own, and reads nothing back.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl libp2p::request_response::Codec for RawCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &Self::Protocol, _: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, _: &mut T) -> std::io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    async fn write_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        use futures::AsyncWriteExt;
        io.write_all(&bytes).await?;
        io.flush().await
    }

    async fn write_response<T>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
        _: (),
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// [`expect_disconnect`] for raw `bytes` on evo's request protocol.
fn raw_request_and_expect_disconnect(addr: &str, bytes: Vec<u8>) -> bool {
    use libp2p::request_response::{self, ProtocolSupport};
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(protocol::codec::PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default(),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    type Raw = libp2p::request_response::Behaviour<RawCodec>;
    let send = once_connected(move |swarm: &mut libp2p::Swarm<Raw>, peer| {
        swarm.behaviour_mut().send_request(&peer, bytes);
    });
    expect_disconnect(swarm, addr, send)
}

/// A migrant whose weights are fresh (untrained) but which claims 99% validation
/// accuracy.
fn lying_migrant(dir: &Path) -> protocol::wire::Migrant {
    let genome = genome::Genome::initial(
        genome::InputShape {
            height: 32,
            width: 32,
            channels: 3,
        },
        10,
    );
    let (net, _) = trainer::Network::new(
        &genome,
        &trainer::Device::Cpu,
        None,
        &genome::Invalidated::none(),
        7,
    )
    .unwrap();
    let meta = trainer::individual::ModelMeta {
        normalization: trainer::batch::Normalization {
            mean: vec![0.5; 3],
            std: vec![0.25; 3],
        },
        steps: 20,
        val_accuracy: Some(0.99),
        test_accuracy: None,
        dataset: "cifar10".into(),
        weights_sha256: None,
    };
    trainer::individual::save(dir, &genome, net.weights(), &meta).unwrap();
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    protocol::wire::Migrant::new(
        protocol::wire::Summary {
            id: 7,
            island: "liar".into(),
            genome,
            fitness: 0.99,
            parent: None,
            mutations: Vec::new(),
            flops: 1,
            born_at_ms: 0,
        },
        String::from_utf8(read(trainer::individual::META_FILE)).unwrap(),
        read(trainer::individual::WEIGHTS_FILE),
    )
}

/// A migrant is scored on arrival: one that overstates its fitness is refused and its
/// sender penalized. So is the sender of a request that breaks the protocol's rules, and
/// of one over the size cap.
#[test]
fn lying_invalid_and_oversized_requests_get_their_senders_penalized() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 20);
    let data = dir.path().join("cifar-10-batches-bin");
    // Replace-random admits (and so scores) any migrant when the population is full;
    // replace-worst would refuse the liar unscored, with no penalty, once every member
    // scores 100% on these few validation images (they often do).
    let node = start(
        &data,
        dir.path().join("a"),
        &["migration.admit=replace-random"],
    );
    let addr = address(&node);
    wait_for(Duration::from_secs(60), "a trained individual", || {
        (trained(node.port())? >= 1).then_some(())
    });

    let model = dir.path().join("liar");
    std::fs::create_dir_all(&model).unwrap();
    let liar = protocol::wire::Request::Migrate {
        island: "liar".into(),
        migrants: vec![lying_migrant(&model)],
    };
    // Before a hello it is refused, not scored; after one, it is scored and the liar
    // disconnected.
    let (refused, disconnected) = request_after_hello_and_expect_disconnect(&addr, liar);
    let refused = refused.expect("a migration before a hello was not refused");
    assert!(refused.contains("hello"), "{refused}");
    assert!(disconnected, "the node did not disconnect the liar");
    let s = wait_for(Duration::from_secs(10), "the penalty", || {
        let s = status(node.port())?;
        (s["penalized_peers"].as_u64()? >= 1).then_some(s)
    });
    let migrations = get_json(node.port(), "/migrations").unwrap();
    assert!(
        !migrations
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["direction"] == "in"),
        "{migrations}"
    );

    // A pull of a million migrants decodes but breaks the cap: penalized too.
    let greedy = protocol::wire::Request::Pull {
        island: "greedy".into(),
        count: 1_000_000,
    };
    assert!(
        request_and_expect_disconnect(&addr, greedy),
        "the node did not disconnect the greedy peer"
    );
    wait_for(Duration::from_secs(10), "the second penalty", || {
        (status(node.port())?["penalized_peers"].as_u64()? >= 2).then_some(())
    });

    // A request whose length prefix says 2^40 bytes, far over the cap: rejected before
    // a byte of it is read or allocated, and its sender penalized.
    let mut oversized = (1u64 << 40).to_be_bytes().to_vec();
    oversized.extend_from_slice(b"EVO");
    assert!(
        raw_request_and_expect_disconnect(&addr, oversized),
        "the node did not disconnect the sender of an oversized request"
    );
    wait_for(Duration::from_secs(10), "the third penalty", || {
        (status(node.port())?["penalized_peers"].as_u64()? >= 3).then_some(())
    });
    // The node is alive and still training; no immigrant joined it.
    let before = s["individuals_trained"].as_u64().unwrap();
    wait_for(Duration::from_secs(60), "more training", || {
        (trained(node.port())? > before).then_some(())
    });
    let records: Vec<Value> = std::fs::read_dir(dir.path().join("a/individuals"))
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path().join("record.json")).ok())
        .map(|b| serde_json::from_slice(&b).unwrap())
        .collect();
    assert!(records.iter().all(|r| r["origin"].is_null()), "{records:?}");
}
