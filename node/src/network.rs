//! The node's libp2p side: one task owns the swarm ([`EventLoop`]), fed by a command
//! channel ([`Network`], cloneable), and emits what arrives as [`NetEvent`]s on a bounded
//! channel ([`NetEvents`]) — the shape of rust-libp2p's `file-sharing` example. It knows
//! nothing of the shard: `evo run` hands the shard both ends.
//!
//! The event loop handles on its own what needs no population: it says hello to every
//! peer it connects to and answers hellos (a peer whose fitness settings differ is told so
//! and disconnected; if it was one of our `--bootstrap` peers, the shard is told to refuse
//! to join), refuses migrations and pulls from a peer that has not shown compatible
//! settings in a hello (either way round), validates every gossip message before it is
//! forwarded (invalid ones are rejected, which lowers the sender's gossipsub score, and
//! the sender is disconnected), feeds Kademlia with identified peers, and bootstraps.

use futures::{SinkExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, kad, mdns, Multiaddr, PeerId, Swarm};
use protocol::behaviour::{EvoBehaviour, EvoBehaviourEvent};
use protocol::codec::RequestFrame;
use protocol::wire::{self, Announcement, Request, Response};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What this node tells peers about itself in a hello.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The experiment id.
    pub experiment: String,
    /// The fitness fingerprint.
    pub fingerprint: String,
    /// The fitness settings, JSON.
    pub settings_json: String,
    /// Limits every received genome must respect.
    pub limits: genome::Limits,
}

/// What the event loop tells whoever runs the node (the shard takes them as a stream).
#[derive(Debug)]
pub enum NetEvent {
    /// The node listens on this full address (with `/p2p/`).
    Listening(String),
    /// A peer connected.
    Connected(String),
    /// A peer's last connection closed.
    Disconnected(String),
    /// A peer answered our hello: same experiment.
    Compatible(String),
    /// A peer has other fitness settings (JSON); `bootstrap` if we joined through it.
    Incompatible {
        /// The peer.
        peer: String,
        /// Its settings, JSON.
        theirs: String,
        /// Whether it is one of our bootstrap peers.
        bootstrap: bool,
    },
    /// Gossip from another island (validated).
    Announcement(Box<Announcement>),
    /// A request to answer with [`Command::Respond`] and this id.
    Request {
        /// Its number.
        id: u64,
        /// The asking peer.
        peer: String,
        /// The request.
        request: Box<Request>,
    },
    /// A peer sent invalid data and was disconnected.
    Penalized {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// Something to tell the person watching.
    Log(String),
}

/// The events the event loop emits, as a stream.
pub type NetEvents = futures::channel::mpsc::Receiver<NetEvent>;

/// How many events may wait to be taken before the event loop waits for its reader.
pub const EVENT_BUFFER: usize = 256;

/// A command for the event loop.
#[derive(Debug)]
pub enum Command {
    /// Publish an announcement on the experiment's topic.
    Announce(Box<Announcement>),
    /// Send a request to a peer; the answer comes back on `reply`.
    Request {
        /// The peer.
        peer: PeerId,
        /// The request.
        request: Box<Request>,
        /// Where the response (or why there is none) goes.
        reply: oneshot::Sender<Result<Response, String>>,
    },
    /// Answer an inbound request the shard was asked.
    Respond {
        /// The request's number, as given in [`NetEvent::Request`].
        id: u64,
        /// The answer.
        response: Box<Response>,
    },
    /// Disconnect a peer (it sent invalid data).
    Penalize {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
}

/// Gossip payload bytes and messages this node published and received (the
/// announcements themselves, not gossipsub's own control traffic).
#[derive(Debug, Default)]
pub struct Traffic {
    /// Bytes published.
    pub bytes_out: AtomicU64,
    /// Messages published.
    pub messages_out: AtomicU64,
    /// Bytes received (before validation).
    pub bytes_in: AtomicU64,
    /// Messages received.
    pub messages_in: AtomicU64,
}

/// A handle on the event loop.
#[derive(Debug, Clone)]
pub struct Network {
    commands: mpsc::UnboundedSender<Command>,
    /// This node's peer id.
    pub peer_id: PeerId,
    /// Its gossip traffic so far.
    pub traffic: Arc<Traffic>,
}

impl Network {
    /// Sends a command (lost if the event loop has stopped).
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Sends `request` to `peer`; the future gives its answer, or why there is none.
    pub fn request(
        &self,
        peer: PeerId,
        request: Request,
    ) -> impl std::future::Future<Output = Result<Response, String>> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Request {
            peer,
            request: Box::new(request),
            reply,
        });
        async move {
            answer
                .await
                .unwrap_or_else(|_| Err("the network stopped".to_string()))
        }
    }
}

/// The task that owns the swarm.
pub struct EventLoop {
    swarm: Swarm<EvoBehaviour>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: futures::channel::mpsc::Sender<NetEvent>,
    /// Events waiting to be sent on `events` (handlers push, the loop sends).
    outbox: VecDeque<NetEvent>,
    topic: IdentTopic,
    identity: Identity,
    bootstrap: BTreeSet<PeerId>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, String>>>,
    hellos: HashMap<OutboundRequestId, PeerId>,
    inbound: HashMap<u64, ResponseChannel<Response>>,
    next_inbound: u64,
    greeted: BTreeSet<PeerId>,
    /// Connected peers that have shown settings equal to ours, in a hello of theirs or in
    /// the answer to ours: the only ones whose migrations and pulls are taken.
    introduced: BTreeSet<PeerId>,
    traffic: Arc<Traffic>,
}

/// Starts listening and dialing; returns the handle, the loop to spawn and the stream of
/// its events.
pub fn start(
    mut swarm: Swarm<EvoBehaviour>,
    identity: Identity,
    listen: &[Multiaddr],
    bootstrap: &[Multiaddr],
) -> anyhow::Result<(Network, EventLoop, NetEvents)> {
    let topic = protocol::behaviour::topic(&identity.experiment);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| anyhow::anyhow!("subscribing to the experiment's topic: {e:?}"))?;
    for addr in listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| anyhow::anyhow!("listening on {addr}: {e}"))?;
    }
    let mut peers = BTreeSet::new();
    for addr in bootstrap {
        let Some(Protocol::P2p(peer)) = addr.iter().last() else {
            anyhow::bail!("--bootstrap {addr} does not end in /p2p/<peer id>");
        };
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        swarm
            .dial(addr.clone())
            .map_err(|e| anyhow::anyhow!("dialing {addr}: {e}"))?;
        peers.insert(peer);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let (events, events_rx) = futures::channel::mpsc::channel(EVENT_BUFFER);
    let peer_id = *swarm.local_peer_id();
    let traffic = Arc::new(Traffic::default());
    Ok((
        Network {
            commands: tx,
            peer_id,
            traffic: traffic.clone(),
        },
        EventLoop {
            swarm,
            commands: rx,
            events,
            outbox: VecDeque::new(),
            topic,
            identity,
            bootstrap: peers,
            pending: HashMap::new(),
            hellos: HashMap::new(),
            inbound: HashMap::new(),
            next_inbound: 0,
            greeted: BTreeSet::new(),
            introduced: BTreeSet::new(),
            traffic,
        },
        events_rx,
    ))
}

impl EventLoop {
    /// Runs until the command channel closes or nobody reads its events.
    pub async fn run(mut self) {
        let mut bootstrap_timer = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => return,
                },
                _ = bootstrap_timer.tick() => {
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
            // The channel is bounded: a slow reader slows the loop down rather than
            // letting events pile up without end.
            while let Some(event) = self.outbox.pop_front() {
                if self.events.send(event).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Queues an event for the reader; the loop sends it before it polls again.
    fn emit(&mut self, event: NetEvent) {
        self.outbox.push_back(event);
    }

    fn hello(&self) -> Request {
        Request::Hello {
            experiment: self.identity.experiment.clone(),
            fingerprint: self.identity.fingerprint.clone(),
            settings_json: self.identity.settings_json.clone(),
            island: self.swarm.local_peer_id().to_string(),
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Announce(a) => match wire::encode(a.as_ref()) {
                Ok(bytes) => {
                    let len = bytes.len() as u64;
                    // No peer yet, or the same bytes again: nothing to do.
                    if self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(self.topic.clone(), bytes)
                        .is_ok()
                    {
                        self.traffic.bytes_out.fetch_add(len, Ordering::Relaxed);
                        self.traffic.messages_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => self.emit(NetEvent::Log(format!("announcement not sent: {e}"))),
            },
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .exchange
                    .send_request(&peer, (*request).into());
                self.pending.insert(id, reply);
            }
            Command::Respond { id, response } => {
                if let Some(channel) = self.inbound.remove(&id) {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .exchange
                        .send_response(channel, *response);
                }
            }
            Command::Penalize { peer, reason } => self.penalize(peer, &reason),
        }
    }

    fn penalize(&mut self, peer: PeerId, reason: &str) {
        self.emit(NetEvent::Penalized {
            peer: peer.to_string(),
            reason: reason.to_string(),
        });
        self.swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<EvoBehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let peer = *self.swarm.local_peer_id();
                let full = address.clone().with_p2p(peer).unwrap_or(address);
                self.emit(NetEvent::Listening(full.to_string()));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } if num_established.get() == 1 => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer_id, endpoint.get_remote_address().clone());
                self.emit(NetEvent::Connected(peer_id.to_string()));
                if self.greeted.insert(peer_id) {
                    let hello = self.hello();
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .exchange
                        .send_request(&peer_id, hello.into());
                    self.hellos.insert(id, peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.greeted.remove(&peer_id);
                self.introduced.remove(&peer_id);
                self.emit(NetEvent::Disconnected(peer_id.to_string()));
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: EvoBehaviourEvent) {
        match event {
            EvoBehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                self.traffic
                    .bytes_in
                    .fetch_add(message.data.len() as u64, Ordering::Relaxed);
                self.traffic.messages_in.fetch_add(1, Ordering::Relaxed);
                let verdict =
                    match wire::decode::<Announcement>(&message.data, &self.identity.limits) {
                        Ok(a) if a.experiment == self.identity.experiment => {
                            self.emit(NetEvent::Announcement(Box::new(a)));
                            MessageAcceptance::Accept
                        }
                        Ok(_) => MessageAcceptance::Ignore,
                        Err(e) => {
                            self.penalize(propagation_source, &format!("invalid gossip: {e}"));
                            MessageAcceptance::Reject
                        }
                    };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
            }
            EvoBehaviourEvent::Exchange(request_response::Event::Message {
                peer, message, ..
            }) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(from) = self.hellos.remove(&request_id) {
                        self.on_hello_response(from, response);
                    } else if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            EvoBehaviourEvent::Exchange(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                self.hellos.remove(&request_id);
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(format!("{peer}: {error}")));
                }
                if matches!(error, request_response::OutboundFailure::Io(ref e) if e.kind() == std::io::ErrorKind::InvalidData)
                {
                    self.penalize(peer, &format!("invalid response: {error}"));
                }
            }
            EvoBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            EvoBehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    let _ = self.swarm.dial(addr);
                }
            }
            EvoBehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. })
                if !self.swarm.is_connected(&peer) =>
            {
                let _ = self.swarm.dial(peer);
            }
            _ => {}
        }
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        request: RequestFrame,
        channel: ResponseChannel<Response>,
    ) {
        let request = match request {
            RequestFrame::Valid(request) => request,
            RequestFrame::Invalid(reason) => {
                drop(channel);
                self.penalize(peer, &format!("invalid request: {reason}"));
                return;
            }
        };
        if let Request::Hello {
            fingerprint,
            settings_json,
            ..
        } = &request
        {
            let compatible = *fingerprint == self.identity.fingerprint;
            let response = Response::Hello {
                experiment: self.identity.experiment.clone(),
                fingerprint: self.identity.fingerprint.clone(),
                settings_json: self.identity.settings_json.clone(),
                compatible,
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .exchange
                .send_response(channel, response);
            if compatible {
                self.introduced.insert(peer);
            } else {
                self.emit(NetEvent::Incompatible {
                    peer: peer.to_string(),
                    theirs: settings_json.clone(),
                    bootstrap: self.bootstrap.contains(&peer),
                });
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            return;
        }
        if !self.introduced.contains(&peer) {
            // Not an offence: its hello may still be on the way.
            let response = Response::Refused {
                reason: "no hello with this experiment's settings came first".into(),
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .exchange
                .send_response(channel, response);
            self.emit(NetEvent::Log(format!(
                "peer {peer} sent a request before a hello: refused"
            )));
            return;
        }
        let id = self.next_inbound;
        self.next_inbound += 1;
        self.inbound.insert(id, channel);
        self.emit(NetEvent::Request {
            id,
            peer: peer.to_string(),
            request: Box::new(request),
        });
    }

    fn on_hello_response(&mut self, peer: PeerId, response: Response) {
        match response {
            Response::Hello {
                fingerprint,
                settings_json,
                ..
            } if fingerprint != self.identity.fingerprint => {
                self.emit(NetEvent::Incompatible {
                    peer: peer.to_string(),
                    theirs: settings_json,
                    bootstrap: self.bootstrap.contains(&peer),
                });
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Response::Hello { .. } => {
                self.introduced.insert(peer);
                self.emit(NetEvent::Compatible(peer.to_string()));
            }
            other => self.penalize(peer, &format!("answered a hello with {other:?}")),
        }
    }
}
