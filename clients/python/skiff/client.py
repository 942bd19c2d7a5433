"""A small client of the Skiff cluster API (skiff.api.v1) over gRPC.

It does what the Go client (proto/client) does by hand, and no more:
mutual TLS from a client config file, failover between control nodes on
UNAVAILABLE, List paging with continue tokens, and Watch resumed from the
last resourceVersion seen after the stream (or its server) is lost.
"""

import base64
import os
import threading
import time

import grpc
import yaml
from google.protobuf import any_pb2, symbol_database

from skiff.api.v1 import api_service_pb2 as api
from skiff.api.v1 import api_service_pb2_grpc as api_grpc
from skiff.api.v1 import meta_pb2

# Importing every generated module registers every kind's message, so that
# an Object envelope of any kind can be opened.
from skiff.api.v1 import apps_pb2, autoscaling_pb2, batch_pb2  # noqa: F401
from skiff.api.v1 import coordination_pb2, core_pb2, networking_pb2  # noqa: F401

CONFIG_ENV = "SKIFF_CONFIG"
# The response header a Watch sends once the watch is in place (the server's
# WatchReadyHeader): a stream without it failed before it started.
WATCH_READY_HEADER = "skiff-watch-ready"
TYPE_URL_PREFIX = "type.googleapis.com/"

DEFAULT_CONTEXT = "default"  # the one cluster of a file without contexts

_CONFIG_KEYS = {
    "servers", "server-name", "certificate-authority", "certificate-authority-data",
    "client-certificate", "client-certificate-data", "client-key", "client-key-data", "namespace",
}


class ConfigError(Exception):
    """The client config file is missing or wrong."""


class TooOldError(Exception):
    """A Watch asked for history the server no longer keeps (OUT_OF_RANGE): re-list."""


class UnavailableError(Exception):
    """No control node could serve the call (down, or without a quorum)."""

    def __init__(self, servers, last):
        super().__init__("API server unavailable (tried %s): %s" % (", ".join(servers), _details(last)))
        self.servers = servers
        self.last = last


def _details(err):
    if isinstance(err, grpc.RpcError) and hasattr(err, "details"):
        return err.details()
    return str(err)


def default_config_path():
    """$SKIFF_CONFIG, else ~/.skiff/config (as ctl)."""
    return os.environ.get(CONFIG_ENV) or os.path.join(os.path.expanduser("~"), ".skiff", "config")


class Config:
    """The client config file that `ctl init` (admin.conf), `ctl join` and
    `ctl user create` write: YAML with servers, a CA, a client certificate
    and key (as paths relative to the file, or inline base64 *-data)."""

    def __init__(self, servers, ca_pem, cert_pem, key_pem, namespace="default", server_name=""):
        self.servers = list(servers)
        self.ca_pem, self.cert_pem, self.key_pem = ca_pem, cert_pem, key_pem
        self.namespace = namespace or "default"
        self.server_name = server_name

    @classmethod
    def load(cls, path=None, context=None):
        """Reads the config at path ($SKIFF_CONFIG, ~/.skiff/config). A file
        holding several clusters as contexts gives the one named context,
        else its current-context (as ctl's --context)."""
        path = path or default_config_path()
        try:
            with open(path, "rb") as f:
                doc = yaml.safe_load(f)
        except OSError as e:
            raise ConfigError("client config: %s" % e) from e
        except yaml.YAMLError as e:
            raise ConfigError("client config: %s: %s" % (path, e)) from e
        if not isinstance(doc, dict):
            raise ConfigError("client config: %s: want a mapping of keys, got %s" % (path, type(doc).__name__))
        if "contexts" in doc:
            doc = _select_context(path, doc, context)
        elif context not in (None, "", DEFAULT_CONTEXT):
            raise ConfigError("client config: %s: no context %r: the file holds one cluster, without contexts" % (path, context))
        unknown = sorted(set(doc) - _CONFIG_KEYS)
        if unknown:
            raise ConfigError("client config: %s: unknown field %s" % (path, ", ".join(repr(k) for k in unknown)))
        servers = doc.get("servers") or []
        if not servers:
            raise ConfigError("client config: %s: servers: at least one server address is required" % path)
        base = os.path.dirname(os.path.abspath(path))

        def material(field):
            data, ref = doc.get(field + "-data"), doc.get(field)
            if data:
                try:
                    pem = base64.b64decode(data, validate=True)
                except ValueError as e:
                    raise ConfigError("client config: %s: %s-data: not base64: %s" % (path, field, e)) from e
                where = field + "-data"
            elif ref:
                try:
                    with open(os.path.join(base, ref), "rb") as f:
                        pem = f.read()
                except OSError as e:
                    raise ConfigError("client config: %s: %s: %s" % (path, field, e)) from e
                where = field
            else:
                raise ConfigError("client config: %s: %s or %s-data is required" % (path, field, field))
            if b"-----BEGIN " not in pem:
                raise ConfigError("client config: %s: %s: no PEM block found" % (path, where))
            return pem

        return cls(servers, material("certificate-authority"), material("client-certificate"),
                   material("client-key"), doc.get("namespace", ""), doc.get("server-name", ""))


def _select_context(path, doc, name):
    """The context a file of several clusters names (ctl's proto/client/contexts.go)."""
    extra = sorted(set(doc) - {"contexts", "current-context"})
    if extra:
        raise ConfigError("client config: %s: a file with contexts keeps servers and credentials in its contexts, "
                          "not at the top (%s)" % (path, ", ".join(extra)))
    contexts = doc.get("contexts") or []
    names = [c.get("name") for c in contexts if isinstance(c, dict)]
    name = name or doc.get("current-context")
    if not name:
        raise ConfigError("client config: %s: current-context is not set; choose one of %s" % (path, ", ".join(map(str, names))))
    for c in contexts:
        if isinstance(c, dict) and c.get("name") == name:
            return {k: v for k, v in c.items() if k != "name"}
    raise ConfigError("client config: %s: no context %r (contexts: %s)" % (path, name, ", ".join(map(str, names))))


def kind_of(message):
    """The kind of an API object: its message name ("ConfigMap")."""
    return message.DESCRIPTOR.name


def pack(message):
    """Wraps an API object in the kind-agnostic envelope (Object: kind + Any)."""
    env = meta_pb2.Object(kind=kind_of(message))
    env.object.Pack(message, type_url_prefix=TYPE_URL_PREFIX)
    return env


def unpack(envelope):
    """Opens an Object envelope into the kind's generated message."""
    url = envelope.object.type_url
    if not url.startswith(TYPE_URL_PREFIX):
        raise ValueError("object envelope: type URL %r does not start with %s" % (url, TYPE_URL_PREFIX))
    cls = symbol_database.Default().GetSymbol(url[len(TYPE_URL_PREFIX):])
    obj = cls()
    if not envelope.object.Unpack(obj):
        raise ValueError("object envelope: cannot unpack %s" % url)
    return obj


def code_of(err):
    return err.code() if isinstance(err, grpc.RpcError) and hasattr(err, "code") else None


class Client:
    """Talks to the cluster API through any of the control nodes.

    Every call goes to the current server; on UNAVAILABLE it moves to the
    next one, pausing (retry_backoff, doubling up to max_backoff) each time
    every server was tried, for at most max_attempts tries: long enough to
    ride out a leader election. Other errors are returned at once.
    """

    def __init__(self, config, max_attempts=6, retry_backoff=0.1, max_backoff=2.0, timeout=30.0):
        self.config = config
        self.namespace = config.namespace
        self.max_attempts, self.retry_backoff, self.max_backoff = max_attempts, retry_backoff, max_backoff
        self.timeout = timeout
        creds = grpc.ssl_channel_credentials(root_certificates=config.ca_pem, private_key=config.key_pem,
                                             certificate_chain=config.cert_pem)
        options = [("grpc.max_receive_message_length", 256 << 20)]
        if config.server_name:
            options.append(("grpc.ssl_target_name_override", config.server_name))
        self._channels = [grpc.secure_channel(addr, creds, options=options) for addr in config.servers]
        self._stubs = [api_grpc.APIStub(ch) for ch in self._channels]
        self._current = 0
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, path=None, **kw):
        return cls(Config.load(path), **kw)

    def close(self):
        for ch in self._channels:
            ch.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def current_server(self):
        with self._lock:
            return self.config.servers[self._current % len(self._stubs)]

    def _with_failover(self, attempt):
        """Runs attempt(stub) until a server answers other than UNAVAILABLE."""
        n = len(self._stubs)
        pause = self.retry_backoff
        tried, last = [], None
        for i in range(self.max_attempts):
            with self._lock:
                idx = self._current
            try:
                return attempt(self._stubs[idx % n])
            except grpc.RpcError as e:
                if code_of(e) != grpc.StatusCode.UNAVAILABLE:
                    raise
                last = e
            addr = self.config.servers[idx % n]
            if addr not in tried:
                tried.append(addr)
            with self._lock:
                if self._current == idx:
                    self._current = idx + 1
            if (i + 1) % n == 0:
                time.sleep(pause)
                pause = min(2 * pause, self.max_backoff)
        raise UnavailableError(tried, last)

    def call(self, method, request):
        """Calls a unary API method by name ("Get") with failover."""
        return self._with_failover(lambda stub: getattr(stub, method)(request, timeout=self.timeout))

    def _ns(self, namespace):
        return self.namespace if namespace is None else namespace

    def create(self, obj):
        """Creates obj and returns it as stored. The client does not know
        which kinds are namespaced: set metadata.namespace on those."""
        return unpack(self.call("Create", api.CreateRequest(object=pack(obj))))

    def get(self, kind, name, namespace=None, stale=False):
        return unpack(self.call("Get", api.GetRequest(kind=kind, namespace=self._ns(namespace), name=name, stale=stale)))

    def update(self, obj):
        """Replaces obj's spec and metadata; with metadata.resourceVersion
        set it fails with ABORTED if the object changed since."""
        return unpack(self.call("Update", api.UpdateRequest(object=pack(obj))))

    def delete(self, kind, name, namespace=None):
        return self.call("Delete", api.DeleteRequest(kind=kind, namespace=self._ns(namespace), name=name))

    def list_pages(self, kind, namespace="", label_selector="", field_selector="", limit=500):
        """Yields the List responses page by page (namespace "" is all
        namespaces), following metadata.continue until it is empty."""
        req = api.ListRequest(kind=kind, namespace=namespace, label_selector=label_selector,
                              field_selector=field_selector, limit=limit)
        while True:
            page = self.call("List", req)
            yield page
            # "continue" is a Python keyword: the field is reached by name.
            token = getattr(page.metadata, "continue")
            if not token:
                return
            setattr(req, "continue", token)

    def list(self, kind, namespace="", label_selector="", field_selector="", limit=500):
        """Every matching object (all pages) and the resourceVersion to
        watch from: the first page's, the revision the list was read at."""
        items, rv = [], None
        for page in self.list_pages(kind, namespace, label_selector, field_selector, limit):
            if rv is None:
                rv = page.metadata.resourceVersion
            items.extend(unpack(env) for env in page.items)
        return items, rv

    def _open_watch(self, stub, req):
        stream = stub.Watch(req)
        try:
            md = dict(stream.initial_metadata())
        except grpc.RpcError:
            stream.cancel()
            raise
        if WATCH_READY_HEADER not in md:
            # Trailers only: the watch failed before it started.
            for _ in stream:
                pass
            raise RuntimeError("watch stream started without the %s header" % WATCH_READY_HEADER)
        return stream

    def watch(self, kind, namespace="", resource_version="", name="", label_selector="", field_selector="",
              stop=None, on_stream=None):
        """Yields (type, object, resource_version) for every change after
        resource_version, in revision order, until stop (a threading.Event)
        is set. When the stream breaks — its server died, or restarted —
        it reopens on any control node from the last resourceVersion it
        yielded, so no event is missed or repeated; while no node answers
        it keeps trying, with backoff. Raises TooOldError when that
        revision has left the server's history: list again and watch from
        the list's resourceVersion. Other errors (PERMISSION_DENIED,
        INVALID_ARGUMENT, ...) are raised as grpc.RpcError.

        on_stream, if given, is called with each stream once it is open (a
        caller may cancel() it to stop a blocked watch)."""
        rv = resource_version
        pause = self.retry_backoff
        while stop is None or not stop.is_set():
            req = api.WatchRequest(kind=kind, namespace=namespace, name=name, label_selector=label_selector,
                                   field_selector=field_selector, resource_version=rv)
            try:
                stream = self._with_failover(lambda stub: self._open_watch(stub, req))
                if on_stream:
                    on_stream(stream)
                pause = self.retry_backoff
                try:
                    for resp in stream:
                        for ev in resp.events:
                            rv = ev.resource_version
                            yield api.WatchEvent.Type.Name(ev.type), unpack(ev.object), ev.resource_version
                        if stop is not None and stop.is_set():
                            return
                finally:
                    # Also when the caller stops iterating: end the server's watch.
                    stream.cancel()
            except grpc.RpcError as e:
                code = code_of(e)
                if code == grpc.StatusCode.OUT_OF_RANGE:
                    raise TooOldError("watch %s from resourceVersion %s: %s" % (kind, rv, _details(e))) from e
                if code == grpc.StatusCode.CANCELLED and stop is not None and stop.is_set():
                    return
                # The connection broke (UNAVAILABLE; INTERNAL or CANCELLED for
                # a stream reset by a dying server): resume. Anything else
                # (PERMISSION_DENIED, INVALID_ARGUMENT, ...) is the caller's.
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED):
                    raise
            except UnavailableError:
                pass
            # The stream ended (server gone or restarting): resume from rv.
            time.sleep(pause)
            pause = min(2 * pause, self.max_backoff)
