#include "serve/http_server.h"

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <mutex>

#include "absl/synchronization/mutex.h"
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spdlog/spdlog.h"
#include "zlib.h"

namespace gati::serve {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

namespace {

using Clock = std::chrono::steady_clock;
// A request body held as a string that grows with the bytes received.
// (Beast's string_body reserves a declared Content-Length as soon as the
// headers are in, so a client could make the server hold memory it never
// sends; here memory follows the bytes, and the body budget charges them.)
struct GrowingStringBody {
  using value_type = std::string;

  static std::uint64_t size(const value_type& body) { return body.size(); }

  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(bhttp::header<isRequest, Fields>&, value_type& body) : body_(body) {}

    void init(const boost::optional<std::uint64_t>& length, beast::error_code& error) {
      if (length && *length > body_.max_size()) {
        error = bhttp::error::buffer_overflow;
        return;
      }
      // Enough for a typical request at once; larger bodies grow.
      if (length) body_.reserve(static_cast<size_t>(std::min<std::uint64_t>(*length, 64 << 10)));
      error = {};
    }

    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, beast::error_code& error) {
      const size_t extra = beast::buffer_bytes(buffers);
      if (extra > body_.max_size() - body_.size()) {
        error = bhttp::error::buffer_overflow;
        return 0;
      }
      for (auto buffer : beast::buffers_range_ref(buffers)) {
        body_.append(static_cast<const char*>(buffer.data()), buffer.size());
      }
      error = {};
      return extra;
    }

    void finish(beast::error_code& error) { error = {}; }

   private:
    value_type& body_;
  };
};

using Request = bhttp::request<GrowingStringBody>;

// Now on the steady clock, in nanoseconds: the unit of connection deadlines.
int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             Clock::now().time_since_epoch()).count();
}

// The request target without its query string.
std::string_view PathOf(const Request& request) {
  const std::string_view target(request.target().data(), request.target().size());
  return target.substr(0, target.find('?'));
}
using Parser = bhttp::request_parser<GrowingStringBody>;
using Response = bhttp::response<bhttp::string_body>;

// An inference runs on the I/O thread that read it only below this body
// size; larger ones go to a worker.
constexpr size_t kInlineBodyBytes = 64 << 10;

// Runs a loop until it is stopped; a handler's exception (an allocation
// failure, say) is logged and the loop goes on.
void RunLoop(asio::io_context& io) {
  for (;;) {
    try {
      io.run();
      return;
    } catch (const std::exception& e) {
      spdlog::error("HTTP server thread: {}", e.what());
    } catch (...) {
      spdlog::error("HTTP server thread: unknown exception");
    }
  }
}

// Runs what is queued on a loop, on this thread, until none is left.
void RunLoopPoll(asio::io_context& io) {
  try {
    io.poll();
  } catch (const std::exception& e) {
    spdlog::error("HTTP server: {}", e.what());
  }
}

// Responses smaller than this go uncompressed whatever the client accepts.
constexpr size_t kCompressAtLeast = 1024;

absl::string_view Absl(std::string_view text) { return {text.data(), text.size()}; }

bool AllDigits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Which coding of "gzip" / "deflate" the Accept-Encoding value allows
// (q > 0), gzip first; empty for neither.
std::string AcceptedCoding(absl::string_view accept) {
  bool gzip = false, deflate = false;
  for (absl::string_view item : absl::StrSplit(accept, ',')) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, ';');
    const std::string coding = absl::AsciiStrToLower(absl::StripAsciiWhitespace(parts[0]));
    bool allowed = true;
    for (size_t i = 1; i < parts.size(); ++i) {
      absl::string_view param = absl::StripAsciiWhitespace(parts[i]);
      if (absl::StartsWith(param, "q=") || absl::StartsWith(param, "Q=")) {
        double q = 1;
        allowed = absl::SimpleAtod(param.substr(2), &q) && q > 0;
      }
    }
    if (!allowed) continue;
    if (coding == "gzip" || coding == "x-gzip" || coding == "*") gzip = true;
    if (coding == "deflate") deflate = true;
  }
  return gzip ? "gzip" : deflate ? "deflate" : "";
}

// `body` compressed as gzip or zlib ("deflate"); nullopt on a zlib failure.
std::optional<std::string> Compress(std::string_view body, const std::string& coding) {
  z_stream z{};
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, coding == "gzip" ? 15 + 16 : 15, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    return std::nullopt;
  }
  std::string out(deflateBound(&z, body.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  z.avail_in = static_cast<uInt>(body.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int result = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (result != Z_STREAM_END) return std::nullopt;
  return out;
}

// Inflates a gzip or zlib body (raw deflate too, as some clients send for
// "deflate"), at most `limit` bytes. InvalidArgument for a corrupt body,
// ResourceExhausted past the limit.
absl::StatusOr<std::string> Inflate(const std::string& body, int64_t limit, bool raw) {
  z_stream z{};
  if (inflateInit2(&z, raw ? -15 : 15 + 32) != Z_OK) {
    return absl::InternalError("zlib: inflateInit2 failed");
  }
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  z.avail_in = static_cast<uInt>(body.size());
  char chunk[1 << 16];
  int result = Z_OK;
  while (result != Z_STREAM_END) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof(chunk);
    result = inflate(&z, Z_NO_FLUSH);
    if (result != Z_OK && result != Z_STREAM_END) break;
    out.append(chunk, sizeof(chunk) - z.avail_out);
    if (static_cast<int64_t>(out.size()) > limit) {
      inflateEnd(&z);
      return absl::ResourceExhaustedError(
          absl::StrCat("the decompressed request body exceeds ", limit, " bytes"));
    }
    if (result == Z_OK && z.avail_in == 0 && z.avail_out != 0) break;  // Truncated.
  }
  inflateEnd(&z);
  if (result != Z_STREAM_END) {
    if (!raw && result == Z_DATA_ERROR) return Inflate(body, limit, /*raw=*/true);
    return absl::InvalidArgumentError("the request body is not valid compressed data "
                                      "for its Content-Encoding");
  }
  return out;
}

}  // namespace

// What the server's threads share.
struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  class Session;

  Impl(InferenceService* service_in, Routes routes_in, const HttpOptions& options_in)
      : service(service_in),
        routes(routes_in),
        options(options_in),
        strand(asio::make_strand(io)),
        acceptor(strand),
        retry_timer(strand),
        sweep_timer(strand),
        work_guard(asio::make_work_guard(work)) {}

  void Accept();
  void OnAccept(beast::error_code error, tcp::socket socket);
  // Every sweep period, closes the connections past their deadline.
  void Sweep();
  void Register(const std::shared_ptr<Session>& session);
  // The connections open now (a snapshot that keeps them alive).
  std::vector<std::shared_ptr<Session>> LiveSessions();
  void Unregister(Session* session);
  int64_t Stop(std::chrono::milliseconds grace, bool abandon);

  InferenceService* const service;
  const Routes routes;
  const HttpOptions options;
  asio::io_context io;
  // The acceptor and the timers live on one strand, as Stop's closing does.
  asio::strand<asio::io_context::executor_type> strand;
  tcp::acceptor acceptor;
  asio::steady_timer retry_timer;
  asio::steady_timer sweep_timer;
  // Runs requests that may block, on `threads` workers.
  asio::io_context work;
  asio::executor_work_guard<asio::io_context::executor_type> work_guard;
  std::vector<std::thread> workers;
  std::vector<std::thread> io_threads;
  int port = 0;

  std::atomic<bool> stopping{false};
  std::atomic<int64_t> active{0};   // Requests read and not yet written.
  std::atomic<int64_t> working{0};  // Requests on the pool.
  // Bytes of request bodies being received or held, against
  // options.max_bodies_bytes (declared lengths; a chunked body counts as
  // the body limit).
  std::atomic<int64_t> body_bytes{0};
  // Inference requests run on an I/O thread, at most one fewer than there
  // are I/O threads, so that one always serves the other connections.
  const int inline_slots = std::max(0, options.io_threads - 1);
  std::atomic<int> inline_running{0};
  absl::Mutex sessions_mu;
  std::map<Session*, std::weak_ptr<Session>> sessions ABSL_GUARDED_BY(sessions_mu);
  std::once_flag stopped;
};

// One connection: read a request, answer it, again while it is kept alive.
// Every handler runs on the connection's strand.
class HttpServer::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Impl> server)
      : stream_(std::move(socket)),
        server_(std::move(server)),
        // Bounds what the parser may hold unparsed: chunk extensions and
        // trailers, which neither the header nor the body limit counts.
        buffer_(static_cast<size_t>(server_->options.max_header_bytes) + kBufferSlack) {}
  ~Session() {
    ReleaseBody();
    if (counted_) server_->active.fetch_sub(1);  // A handler threw before writing.
    server_->Unregister(this);
  }

  void Start() {
    beast::error_code ignored;
    stream_.socket().non_blocking(true, ignored);  // For the direct writes.
    asio::dispatch(stream_.get_executor(),
                   beast::bind_front_handler(&Session::ReadHeader, shared_from_this()));
  }

  // On stop: closes the connection, on its strand.
  void CloseOnStrand() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->Close(); });
  }

  // On stop: closes the connection unless a request is being handled.
  void CloseIfIdle() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->idle_) self->Close();
    });
  }
  // From the sweep: closes the connection when its deadline has passed.
  void CloseIfLate(int64_t now_ns) {
    const int64_t deadline = deadline_ns_.load(std::memory_order_relaxed);
    if (deadline == 0 || now_ns < deadline) return;
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      const int64_t late = self->deadline_ns_.load(std::memory_order_relaxed);
      if (late != 0 && NowNs() >= late) self->Close();
    });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  // After the last response: stop sending, then read and drop what the
  // client still sends (at most kLingerBytes, for at most a second), so
  // that unread input does not make the kernel reset the connection before
  // the client has read the response.
  void Linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    SetDeadline(std::chrono::milliseconds(1000));
    LingerRead();
  }

 private:
  static constexpr size_t kBufferSlack = 64 << 10;
  // A body that sends nothing for this long is closed (within the request
  // deadline), so that stalled uploads do not hold the body budget.
  static constexpr std::chrono::milliseconds kStallTimeout{5000};
  static constexpr size_t kLingerBytes = 1 << 20;

  void LingerRead() {
    stream_.async_read_some(
        asio::buffer(discard_.data(), discard_.size()),
        [self = shared_from_this()](beast::error_code error, size_t read) {
          self->lingered_ += read;
          if (error || self->lingered_ > kLingerBytes) return self->Close();
          self->LingerRead();
        });
  }

  void ReleaseBody() {
    if (body_reserved_ > 0) server_->body_bytes.fetch_sub(body_reserved_);
    body_reserved_ = 0;
    const int64_t inflated = inflated_reserved_.exchange(0);
    if (inflated > 0) server_->body_bytes.fetch_sub(inflated);
  }

  // Deadlines are checked by the server's sweep, not by a timer per
  // operation (each would cost timer system calls on every request).
  void SetDeadline(std::chrono::milliseconds after) {
    deadline_ns_.store(NowNs() + std::chrono::duration_cast<std::chrono::nanoseconds>(after).count(),
                       std::memory_order_relaxed);
  }

  void ReadHeader() {
    idle_ = true;
    if (server_->stopping.load()) return Close();
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_->options.max_header_bytes));
    parser_->body_limit(static_cast<uint64_t>(server_->options.max_body_bytes));
    SetDeadline(server_->options.idle_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  void OnHeader(beast::error_code error, size_t) {
    if (error) return OnReadError(error);
    idle_ = false;
    started_ = Clock::now();
    SetDeadline(server_->options.request_timeout);
    request_deadline_ns_ = deadline_ns_.load(std::memory_order_relaxed);
    const auto& request = parser_->get();
    version_ = request.version() == 10 ? 10 : 11;
    head_ = request.method() == bhttp::verb::head;
    header_fields_ = std::distance(request.begin(), request.end());
    if (std::optional<Reply> refused = CheckFraming(request)) {
      return WriteReply(std::move(*refused), /*close=*/true);
    }
    if (parser_->is_done()) return OnBody({}, 0);
    const auto expect = request.find(bhttp::field::expect);
    if (expect != request.end() && version_ >= 11) {
      if (!beast::iequals(expect->value(), "100-continue")) {
        return WriteReply(ErrorReply(417, absl::StrCat("unsupported Expect: ",
                                                       std::string(expect->value()))),
                          /*close=*/true);
      }
      auto self = shared_from_this();
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      return asio::async_write(stream_, asio::buffer(kContinue),
                               [self](beast::error_code write_error, size_t) {
                                 if (write_error) return self->Close();
                                 self->ReadBody();
                               });
    }
    ReadBody();
  }

  void ReadBody() {
    // The part of the body that came in with the headers is parsed here,
    // without a trip through the event loop; the rest is read as it comes.
    while (!parser_->is_done() && buffer_.size() > 0) {
      beast::error_code error;
      const size_t used = parser_->put(buffer_.data(), error);
      buffer_.consume(used);
      if (error == bhttp::error::need_more) break;
      if (error) return OnReadError(error);
      if (used == 0) break;
    }
    if (!ChargeBody()) return RefuseBody();
    if (parser_->is_done()) return OnBody({}, 0);
    ReadMoreBody();
  }

  // Reads the body a piece at a time: each piece moves the deadline (a body
  // that stalls for kStallTimeout is closed) and a chunked body is charged
  // to the body budget as it grows.
  void ReadMoreBody() {
    bhttp::async_read_some(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code error, size_t) {
          if (error) return self->OnReadError(error);
          if (!self->ChargeBody()) return self->RefuseBody();
          if (self->parser_->is_done()) return self->OnBody({}, 0);
          // Progress: the stall deadline moves, the request's does not.
          self->deadline_ns_.store(
              std::min(self->request_deadline_ns_,
                       NowNs() + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     kStallTimeout).count()),
              std::memory_order_relaxed);
          self->ReadMoreBody();
        });
  }

  // The body budget is spent: 503, and the connection closes.
  void RefuseBody() {
    WriteReply(Overloaded(absl::StrCat("overloaded: request bodies of ",
                                       server_->options.max_bodies_bytes,
                                       " bytes are being received; retry later")),
               /*close=*/true);
  }

  // Charges what the body holds beyond what was charged; false past the
  // budget.
  bool ChargeBody() {
    const int64_t held = static_cast<int64_t>(parser_->get().body().size());
    if (held <= body_reserved_) return true;
    const int64_t more = held - body_reserved_;
    body_reserved_ = held;
    return server_->body_bytes.fetch_add(more) + more <= server_->options.max_bodies_bytes;
  }

  // RFC 9112 section 6: one way to frame the body, stated once.
  std::optional<Reply> CheckFraming(const Request& request) {
    const size_t lengths = request.count(bhttp::field::content_length);
    const size_t codings = request.count(bhttp::field::transfer_encoding);
    if (lengths > 1) return ErrorReply(400, "more than one Content-Length header");
    if (lengths == 1 && codings > 0) {
      return ErrorReply(400, "both Content-Length and Transfer-Encoding are given");
    }
    if (codings > 1) return ErrorReply(400, "more than one Transfer-Encoding header");
    if (codings == 1 &&
        !absl::EqualsIgnoreCase(
            absl::StripAsciiWhitespace(Absl(request[bhttp::field::transfer_encoding])),
            "chunked")) {
      return ErrorReply(501, absl::StrCat("unsupported Transfer-Encoding '",
                                          std::string(request[bhttp::field::transfer_encoding]),
                                          "' (only chunked)"));
    }
    if (lengths == 1) {
      const auto value = request[bhttp::field::content_length];
      if (!AllDigits(std::string_view(value.data(), value.size()))) {
        return ErrorReply(400, absl::StrCat("malformed Content-Length '", std::string(value),
                                            "'"));
      }
    }
    if (request.version() >= 11 && request.count(bhttp::field::host) != 1) {
      return ErrorReply(400, "an HTTP/1.1 request needs exactly one Host header");
    }
    if (lengths == 1) {
      const boost::optional<uint64_t> length = parser_->content_length();
      if (length && *length > static_cast<uint64_t>(server_->options.max_body_bytes)) {
        return ErrorReply(413, absl::StrCat("the request body exceeds ",
                                            server_->options.max_body_bytes, " bytes"));
      }
    }
    return std::nullopt;
  }

  void OnReadError(beast::error_code error) {
    if (error == bhttp::error::end_of_stream || error == asio::error::operation_aborted ||
        error == asio::error::eof || error == asio::error::connection_reset ||
        error == asio::error::broken_pipe) {
      // The client left, or the sweep closed a connection past its deadline.
      return Close();
    }
    if (error == bhttp::error::header_limit) {
      return WriteReply(ErrorReply(431, absl::StrCat("the request line and headers exceed ",
                                                     server_->options.max_header_bytes,
                                                     " bytes")),
                        true);
    }
    if (error == bhttp::error::buffer_overflow) {
      const bool in_body = parser_ && parser_->is_header_done();
      return WriteReply(
          ErrorReply(in_body ? 413 : 431,
                     in_body ? "chunk extensions or trailer fields are too long"
                             : absl::StrCat("the request line and headers exceed ",
                                            server_->options.max_header_bytes, " bytes")),
          true);
    }
    if (error == bhttp::error::body_limit) {
      return WriteReply(ErrorReply(413, absl::StrCat("the request body exceeds ",
                                                     server_->options.max_body_bytes, " bytes")),
                        true);
    }
    WriteReply(ErrorReply(400, absl::StrCat("malformed HTTP request: ", error.message())), true);
  }

  void OnBody(beast::error_code error, size_t) {
    if (error) return OnReadError(error);
    deadline_ns_.store(0, std::memory_order_relaxed);
    ++served_;
    server_->active.fetch_add(1);
    counted_ = true;
    auto request = std::make_shared<Request>(parser_->release());
    parser_.reset();
    keep_alive_ = request->keep_alive() && served_ < server_->options.keep_alive_requests;
    accept_coding_ = AcceptedCoding(Absl((*request)[bhttp::field::accept_encoding]));
    // Trailer fields would land among the headers (a Content-Encoding, a
    // restricted API's key); none of the protocol's requests has any.
    if (std::distance(request->begin(), request->end()) != header_fields_) {
      return WriteReply(ErrorReply(400, "trailer fields are not accepted"), /*close=*/true);
    }
    if (server_->stopping.load()) {
      return WriteReply(Overloaded("the server is shutting down"), /*close=*/true);
    }
    if (head_) {
      // Every route answers GET or POST; a HEAD gets its 405 without a body.
      return WriteReply(ErrorReply(405, "HEAD is not supported; use GET or POST"), true);
    }
    const bool compressed = request->find(bhttp::field::content_encoding) != request->end();
    const Route route =
        ParseRoute(std::string(request->method_string()), PathOf(*request), server_->routes);
    // Inflating is work: a compressed body is decoded on a worker, never on
    // an I/O thread.
    if (!route.blocking && !compressed) {
      return WriteReply(Handle(*server_->service, server_->options.access, route, View(*request)));
    }
    // A small inference runs here, on this I/O thread, while another I/O
    // thread is left for every other connection: no handoff to a worker and
    // back. Only while no other inference runs: under load, compute stays
    // on the workers.
    if (route.kind == Route::Kind::kInfer && !compressed &&
        request->body().size() <= kInlineBodyBytes && server_->service->in_flight() == 0) {
      struct Slot {
        std::atomic<int>& running;
        ~Slot() { running.fetch_sub(1); }
      };
      if (server_->inline_running.fetch_add(1) < server_->inline_slots) {
        Reply reply;
        {
          Slot slot{server_->inline_running};
          reply = Handle(*server_->service, server_->options.access, route, View(*request));
        }
        return WriteReply(std::move(reply));
      }
      server_->inline_running.fetch_sub(1);
    }
    // Requests that may block go to the pool; when every worker is taken,
    // the answer is 503 now rather than a wait.
    if (server_->working.fetch_add(1) >= server_->options.threads) {
      server_->working.fetch_sub(1);
      return WriteReply(
          Overloaded(absl::StrCat("overloaded: all ", server_->options.threads,
                                  " HTTP workers are busy (--http-threads); retry later")));
    }
    asio::post(server_->work, [self = shared_from_this(), request, route] {
      struct Release {
        std::atomic<int64_t>& working;
        ~Release() { working.fetch_sub(1); }
      } release{self->server_->working};
      Reply reply;
      try {
        if (std::optional<Reply> refused = self->Decompress(*request)) {
          reply = std::move(*refused);
        } else {
          reply = Handle(*self->server_->service, self->server_->options.access, route,
                         self->View(*request));
        }
      } catch (const std::exception& e) {
        reply = ErrorReply(500, absl::StrCat("internal error: ", e.what()));
      }
      asio::post(self->stream_.get_executor(), [self, reply = std::move(reply)]() mutable {
        self->WriteReply(std::move(reply));
      });
    });
  }

  HttpRequest View(const Request& request) const {
    HttpRequest view;
    view.method = std::string(request.method_string());
    view.path = PathOf(request);
    view.body = &request.body();
    view.header = [&request](const std::string& name) -> std::optional<std::string> {
      const auto found = request.find(name);
      if (found == request.end()) return std::nullopt;
      return std::string(found->value());
    };
    return view;
  }

  // Inflates a compressed body in place; the refusal otherwise.
  std::optional<Reply> Decompress(Request& request) {
    const auto found = request.find(bhttp::field::content_encoding);
    if (found == request.end()) return std::nullopt;
    const std::string coding =
        absl::AsciiStrToLower(absl::StripAsciiWhitespace(std::string(found->value())));
    if (coding == "identity") return std::nullopt;
    if (coding != "gzip" && coding != "x-gzip" && coding != "deflate") {
      return ErrorReply(415, absl::StrCat("unsupported Content-Encoding '", coding,
                                          "' (gzip, deflate or identity)"));
    }
    absl::StatusOr<std::string> inflated =
        Inflate(request.body(), server_->options.max_body_bytes, /*raw=*/false);
    if (!inflated.ok()) {
      return ErrorReply(absl::IsResourceExhausted(inflated.status()) ? 413 : 400,
                        inflated.status().message());
    }
    // The inflated body is held too: it counts against the budget.
    const int64_t size = static_cast<int64_t>(inflated->size());
    if (server_->body_bytes.fetch_add(size) + size > server_->options.max_bodies_bytes) {
      server_->body_bytes.fetch_sub(size);
      return Overloaded("overloaded: too many request bodies are held; retry later");
    }
    inflated_reserved_.fetch_add(size);
    request.body() = std::move(inflated).value();
    request.erase(bhttp::field::content_encoding);
    return std::nullopt;
  }

  void WriteReply(Reply reply, bool close = false) {
    if (close || server_->stopping.load()) keep_alive_ = false;
    engine_us_ = reply.engine_us;
    transport_ = reply.transport;
    response_.emplace();
    Response& response = *response_;
    response.version(version_);
    response.result(static_cast<unsigned>(reply.status));
    response.set(bhttp::field::server, kServerName);
    response.set(bhttp::field::content_type, reply.content_type);
    for (const auto& [name, value] : reply.headers) response.set(name, value);
    if (reply.compressible && !accept_coding_.empty() && reply.body.size() >= kCompressAtLeast) {
      if (std::optional<std::string> packed = Compress(reply.body, accept_coding_)) {
        reply.body = std::move(*packed);
        response.set(bhttp::field::content_encoding, accept_coding_);
        response.set(bhttp::field::vary, "Accept-Encoding");
      }
    }
    if (head_) {
      reply.body.clear();
      keep_alive_ = false;
    }
    response.body() = std::move(reply.body);
    response.keep_alive(keep_alive_);
    response.prepare_payload();
    // Most responses fit the socket's buffer: write them now, without
    // blocking (the socket is non-blocking), and go asynchronous only for
    // what does not fit.
    serializer_.emplace(response);
    beast::error_code error;
    bhttp::write(stream_.socket(), *serializer_, error);
    if (error != asio::error::would_block && error != asio::error::try_again) {
      return OnWrite(error, 0);
    }
    SetDeadline(server_->options.request_timeout);
    bhttp::async_write(stream_, *serializer_,
                       beast::bind_front_handler(&Session::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code error, size_t) {
    if (engine_us_ >= 0 && !error) {
      server_->service->RecordOverhead(
          transport_, std::chrono::duration<double, std::micro>(Clock::now() - started_).count(),
          engine_us_);
      engine_us_ = -1;
    }
    if (counted_) {
      server_->active.fetch_sub(1);
      counted_ = false;
    }
    serializer_.reset();
    response_.reset();
    ReleaseBody();
    if (error) return Close();
    if (!keep_alive_) return Linger();
    ReadHeader();
  }

  beast::tcp_stream stream_;
  std::shared_ptr<Impl> server_;
  beast::flat_buffer buffer_;
  std::optional<Parser> parser_;
  std::optional<Response> response_;
  std::optional<bhttp::response_serializer<bhttp::string_body>> serializer_;
  std::string accept_coding_;
  Clock::time_point started_;  // The request's headers were read.
  double engine_us_ = -1;      // Of the reply being written; -1: not inference.
  Transport transport_ = Transport::kHttpJson;
  int served_ = 0;
  bool keep_alive_ = true;
  bool counted_ = false;  // This connection's request is in `active`.
  bool idle_ = true;      // Waiting for a request (nothing to lose on close).
  unsigned version_ = 11;  // Of the request being answered: 10 or 11.
  bool head_ = false;
  std::ptrdiff_t header_fields_ = 0;  // Fields of the header block.
  int64_t body_reserved_ = 0;         // Of Impl::body_bytes.
  // Of Impl::body_bytes, for an inflated body (charged on a worker).
  std::atomic<int64_t> inflated_reserved_{0};
  size_t lingered_ = 0;
  std::array<char, 4096> discard_{};
  std::atomic<int64_t> deadline_ns_{0};  // Steady clock; 0: none.
  int64_t request_deadline_ns_ = 0;      // The whole request's, from its headers.
};

void HttpServer::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(io),
                        beast::bind_front_handler(&Impl::OnAccept, shared_from_this()));
}

void HttpServer::Impl::OnAccept(beast::error_code error, tcp::socket socket) {
  if (stopping.load() || error == asio::error::operation_aborted) return;
  if (error) {
    // Out of descriptors (or another transient error): back off, go on.
    spdlog::warn("HTTP accept on port {}: {}", port, error.message());
    retry_timer.expires_after(std::chrono::milliseconds(50));
    retry_timer.async_wait([self = shared_from_this()](beast::error_code wait_error) {
      if (!wait_error) self->Accept();
    });
    return;
  }
  beast::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  bool full = false;
  {
    absl::MutexLock lock(&sessions_mu);
    full = static_cast<int>(sessions.size()) >= options.max_connections;
  }
  if (full) {
    socket.close(ignored);
  } else {
    auto session = std::make_shared<Session>(std::move(socket), shared_from_this());
    Register(session);
    session->Start();
  }
  Accept();
}

void HttpServer::Impl::Sweep() {
  const auto shortest = std::min(options.idle_timeout, options.request_timeout);
  const auto period = std::clamp<std::chrono::milliseconds>(
      shortest / 8, std::chrono::milliseconds(5), std::chrono::milliseconds(250));
  sweep_timer.expires_after(period);
  sweep_timer.async_wait([self = shared_from_this()](beast::error_code error) {
    if (error || self->stopping.load()) return;
    const int64_t now = NowNs();
    for (auto& session : self->LiveSessions()) session->CloseIfLate(now);
    self->Sweep();
  });
}

std::vector<std::shared_ptr<HttpServer::Impl::Session>> HttpServer::Impl::LiveSessions() {
  std::vector<std::shared_ptr<Session>> live;
  absl::MutexLock lock(&sessions_mu);
  for (auto& [raw, weak] : sessions) {
    if (auto session = weak.lock()) live.push_back(std::move(session));
  }
  return live;
}

void HttpServer::Impl::Register(const std::shared_ptr<Session>& session) {
  absl::MutexLock lock(&sessions_mu);
  sessions[session.get()] = session;
}

void HttpServer::Impl::Unregister(Session* session) {
  absl::MutexLock lock(&sessions_mu);
  sessions.erase(session);
}

int64_t HttpServer::Impl::Stop(std::chrono::milliseconds grace, bool abandon) {
  int64_t unfinished = 0;
  std::call_once(stopped, [&] {
    stopping.store(true);
    asio::post(strand, [self = shared_from_this()] {
      beast::error_code ignored;
      self->acceptor.close(ignored);
      self->retry_timer.cancel();
      self->sweep_timer.cancel();
    });
    std::vector<std::shared_ptr<Session>> live = LiveSessions();
    for (auto& session : live) session->CloseIfIdle();
    const Clock::time_point deadline = Clock::now() + grace;
    while (active.load() > 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    unfinished = active.load();
    work_guard.reset();
    if (unfinished > 0 && abandon) {
      io.stop();
      // A request still running past the deadline (on a worker, or inline
      // on an I/O thread) is abandoned: no thread is waited for, so the
      // exit stays bounded. What they hold stays allocated.
      work.stop();
      for (std::thread& worker : workers) worker.detach();
      for (std::thread& thread : io_threads) thread.detach();
      return;
    }
    // Requests still running finish (their workers and, for an inline one,
    // its I/O thread are waited for). Responses still being written get a
    // second more; then every connection is closed and the loop stops.
    for (std::thread& worker : workers) worker.join();
    // A request dispatched just as the workers left runs here.
    work.restart();
    RunLoopPoll(work);
    const Clock::time_point writes_deadline = Clock::now() + std::chrono::seconds(1);
    while (active.load() > 0 && Clock::now() < writes_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    for (auto& session : live) session->CloseOnStrand();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    io.stop();
    for (std::thread& thread : io_threads) {
      if (thread.joinable()) thread.join();
    }
    // No thread runs the loop now: close what is left here, then let the
    // aborted operations complete, which releases their connections.
    for (auto& session : live) session->Close();
    live.clear();
    io.restart();
    io.poll();
  });
  return unfinished;
}

HttpServer::HttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(InferenceService* service,
                                                              Routes routes,
                                                              const HttpOptions& options) {
  if (options.threads < 1 || options.io_threads < 1 || options.backlog < 1 ||
      options.max_body_bytes < 1 || options.max_header_bytes < 256 ||
      options.max_header_bytes > UINT32_MAX || options.max_connections < 1 ||
      options.keep_alive_requests < 1 || options.idle_timeout.count() < 1 ||
      options.request_timeout.count() < 1) {
    return absl::InvalidArgumentError(
        "HTTP threads, I/O threads, backlog, body limit, connection limit, keep-alive count "
        "and timeouts must be positive, and the header limit at least 256 bytes");
  }
  HttpOptions checked = options;
  // At least one whole body fits the budget.
  checked.max_bodies_bytes = std::max(checked.max_bodies_bytes, checked.max_body_bytes);
  auto impl = std::make_shared<Impl>(service, routes, checked);
  beast::error_code error;
  tcp::resolver resolver(impl->io);
  const auto endpoints =
      resolver.resolve(options.host, std::to_string(options.port), tcp::resolver::passive, error);
  auto unavailable = [&](const std::string& why) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.host, ":", options.port, ": ", why));
  };
  if (error || endpoints.empty()) return unavailable(error ? error.message() : "no address");
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  impl->acceptor.open(endpoint.protocol(), error);
  if (!error) impl->acceptor.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) impl->acceptor.bind(endpoint, error);
  if (!error) impl->acceptor.listen(options.backlog, error);
  if (error) return unavailable(error.message());
  impl->port = impl->acceptor.local_endpoint().port();
  impl->Accept();
  impl->Sweep();
  for (int i = 0; i < options.threads; ++i) {
    // Each thread holds the server: one abandoned at a drain deadline
    // keeps what it uses alive.
    impl->workers.emplace_back([self = impl] { RunLoop(self->work); });
  }
  for (int i = 0; i < options.io_threads; ++i) {
    impl->io_threads.emplace_back([self = impl] {
      auto guard = asio::make_work_guard(self->io);
      RunLoop(self->io);
    });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() { Stop(); }

int HttpServer::port() const { return impl_->port; }


int64_t HttpServer::Stop(std::chrono::milliseconds grace, bool abandon) {
  return impl_->Stop(grace, abandon);
}

}  // namespace gati::serve
