// libFuzzer target: the packet parser, both classifiers, the fragment table and the flow table
// of `state = keep` on arbitrary frames. The first input byte picks the parse settings and the arrival port, the rest is the
// frame (libFuzzer hands it over in a buffer of exactly its size, so AddressSanitizer sees any
// read past its end; the flow table reads the frame through an mbuf whose external buffer is that
// exact buffer). Besides memory errors it checks what the parser promises, that the trie and the
// reference classifier agree, that the fragment and flow tables stay within their bounds, and that
// the state stage only ever drops what its stateful entries or ICMP errors concern.
#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/compile/tables.h"
#include "dataplane/classifier_ref.h"
#include "dataplane/classify.h"
#include "dataplane/fragments.h"
#include "dataplane/parse.h"
#include "dataplane/state.h"
#include "fuzz/check.h"

namespace {

// Every field kind: addresses and prefixes of both families, port ranges, ICMP, on=, mirrors.
constexpr const char* kPolicy = R"([appliance]
me = 198.18.0.10, 198.18.0.20, [2001:db8::10]
assign = Servers
[filterlist Web]
filter = *+198.18.0.10:80:TCP
filter = *+[2001:db8::10]:80-90:TCP
filter = 198.18.128.0/17+198.18.0.10:1024-65535:UDP on=outside
[filterlist Services]
filter = *+198.18.0.20:53:UDP
filter = *=0::ICMP:8/0
filter = [2001:db8::]/32+[2001:db8::10]::ICMPV6:128
filter = *+0::47
[filterlist Signatures]
filter = *+0:80:TCP payload=/admin/i
filter = *+0::UDP payload=/\x90{4}/s
[filterlist Rest]
filter = *+0
filter = *=*
[policy Servers]
rule = Web -> permit
rule = Services -> permit
rule = Signatures -> block
rule = Rest -> block
)";

struct State {
    moat::ctl::LoadResult loaded;  ///< owns the entries the table set views
    std::unique_ptr<moat::dp::TableSet> tables;
    std::unique_ptr<moat::dp::FragmentTable> fragments;
    std::uint64_t now = 0;
    // The same policy with its permits stateful, a small flow table, and an mbuf to lend frames.
    moat::ctl::LoadResult loaded_stateful;
    std::unique_ptr<moat::dp::TableSet> stateful;
    std::unique_ptr<moat::dp::FlowTable> flows;
    rte_mempool* pool = nullptr;
    rte_mbuf_ext_shared_info shinfo{};
};

State* state = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    std::vector<std::string> args{"packet_fuzz", "--no-huge", "-m", "64", "--no-pci", "-l", "0",
                                  "--file-prefix", "moat-fuzz-" + std::to_string(getpid()), "--log-level", "*:error"};
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
        std::fprintf(stderr, "packet_fuzz: EAL: %s\n", rte_strerror(rte_errno));
        std::abort();
    }
    state = new State;
    state->loaded = moat::ctl::load_policy_text(kPolicy, "packet_fuzz.ini");
    MOAT_FUZZ_CHECK(state->loaded.usable());
    auto built = moat::ctl::build_table_set(*state->loaded.config, *state->loaded.compiled, 1, 1);
    MOAT_FUZZ_CHECK(built);
    state->tables = std::move(built->tables);
    std::string error;
    state->fragments = moat::dp::FragmentTable::create(64, SOCKET_ID_ANY, error);
    MOAT_FUZZ_CHECK(state->fragments);
    std::string stateful = kPolicy;
    stateful += "[filteraction Keep]\naction = permit\nstate = keep\n";
    for (const std::string rule : {"rule = Web -> permit", "rule = Services -> permit"})
        stateful.replace(stateful.find(rule), rule.size(), rule.substr(0, rule.size() - 6) + "Keep");
    state->loaded_stateful = moat::ctl::load_policy_text(stateful, "packet_fuzz_stateful.ini");
    MOAT_FUZZ_CHECK(state->loaded_stateful.usable());
    auto built_stateful = moat::ctl::build_table_set(*state->loaded_stateful.config, *state->loaded_stateful.compiled, 1, 1);
    MOAT_FUZZ_CHECK(built_stateful);
    state->stateful = std::move(built_stateful->tables);
    MOAT_FUZZ_CHECK(state->stateful->has_state);
    state->flows = moat::dp::FlowTable::create(64, SOCKET_ID_ANY, error);
    MOAT_FUZZ_CHECK(state->flows);
    state->pool = rte_pktmbuf_pool_create("packet_fuzz", 63, 0, 0, 0, SOCKET_ID_ANY);
    MOAT_FUZZ_CHECK(state->pool);
    state->shinfo.free_cb = [](void*, void*) {};  // the buffer is libFuzzer's
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace moat::dp;
    if (size == 0)
        return 0;
    const TableSet& t = *state->tables;
    ParsePolicy pol = t.parse;
    const std::uint8_t mode = data[0];
    pol.ip_options_allow = mode & 1;
    pol.antispoof = mode & 2;
    pol.fragments_track = !(mode & 4);
    const Ingress in = mode & 8 ? Ingress::inside : Ingress::outside;
    const std::uint8_t* frame = data + 1;
    const auto len = static_cast<std::uint32_t>(size - 1);

    PacketMeta m;
    parse_frame(frame, len, in, pol, m);
    PacketMeta full;  // the short path must be invisible
    parse_frame_in_full(frame, len, in, pol, full);
    MOAT_FUZZ_CHECK(m == full);
    MOAT_FUZZ_CHECK(m.key.ingress == in);
    MOAT_FUZZ_CHECK((m.drop == DropReason::fragment) == (m.frag.why != FragDrop::none));
    if (m.frag.present)
        MOAT_FUZZ_CHECK(m.frag.begin <= m.frag.end && m.frag.end <= 65535 && m.frag.begin % 8 == 0);
    if (m.drop != DropReason::none || m.bypass)
        return 0;
    MOAT_FUZZ_CHECK(m.key.family == Family::ipv4 || m.key.family == Family::ipv6);
    MOAT_FUZZ_CHECK(std::uint32_t{m.payload_offset} + m.payload_length <= len);
    MOAT_FUZZ_CHECK(!(m.key.has_ports && m.key.has_icmp));

    const Rank want = classify_ref(t.rules, m.key);
    const Trie& trie = m.key.family == Family::ipv4 ? t.v4 : t.v6;
    static const std::vector<LeafScan> scans = supported_leaf_scans();
    for (const LeafScan s : scans)
        MOAT_FUZZ_CHECK(trie_lookup(trie, trie_key(m.key), s) == want);

    // Payload filters: the trie with their entries agrees with the reference, and the scan reads
    // the payload where the parser says it is (AddressSanitizer watches the frame's end).
    const std::size_t f = m.key.family == Family::ipv4 ? 0 : 1;
    const Rank any = classify_ref_any(t.rules, m.key);
    if (t.has_payload[f])
        MOAT_FUZZ_CHECK(trie_lookup(f == 0 ? t.v4_payload : t.v6_payload, trie_key(m.key), LeafScan::scalar) == any);
    if (any != kNoMatch && t.rules[any].payload != kNoPayload) {
        const std::uint32_t n = std::min<std::uint32_t>(m.payload_length, t.payload.scan_bytes);
        const Rank r = settle_payload(t, t.payload.scratch[0].get(), m.key, want, {frame + m.payload_offset, n},
                                      {t.payload.matched[0].get(), t.payload.patterns});
        MOAT_FUZZ_CHECK(r == want || (r < want && t.rules[r].payload != kNoPayload && header_matches(t.rules[r], m.key)));
    }

    // Time moves on by a tenth of the timeout per input: entries come, go and expire.
    Verdict v{want, want != kNoMatch && t.rules[want].action == Action::permit ? DropReason::none : DropReason::policy};
    state->now += rte_get_tsc_hz() * kFragmentTimeoutMs / 10000;
    state->fragments->settle({&m, 1}, {&v, 1}, 1, state->now);
    state->fragments->sweep(state->now, 4);
    MOAT_FUZZ_CHECK(state->fragments->in_use() <= state->fragments->capacity());
    if (v.drop == DropReason::fragment)
        MOAT_FUZZ_CHECK(m.frag.present && m.frag.why != FragDrop::none);

    // The state stage over the frame as an mbuf whose buffer is exactly the input's bytes, with
    // the same packet twice in the burst (the second finds what the first created) and the
    // stateful policy's verdicts.
    const TableSet& st = *state->stateful;
    PacketMeta sm[2] = {m, m};
    Verdict sv[2];
    classify_burst(st, sm, sv);
    if (sv[0].scan) {  // the payload decides, as scan_payloads settles it (this table set's own ranks)
        const std::uint32_t n = std::min<std::uint32_t>(m.payload_length, st.payload.scan_bytes);
        const Rank r = settle_payload(st, st.payload.scratch[0].get(), m.key, header_winner(st, m.key),
                                      {frame + m.payload_offset, n}, {st.payload.matched[0].get(), st.payload.patterns});
        sv[0] = sv[1] = Verdict{r, drop_for(st, r)};
    }
    const Verdict before = sv[0];
    rte_mbuf* mb = rte_pktmbuf_alloc(state->pool);
    MOAT_FUZZ_CHECK(mb);
    rte_mbuf_ext_refcnt_set(&state->shinfo, 1);
    rte_pktmbuf_attach_extbuf(mb, const_cast<std::uint8_t*>(frame), 0, static_cast<std::uint16_t>(len), &state->shinfo);
    mb->data_off = 0;
    mb->data_len = static_cast<std::uint16_t>(len);
    mb->pkt_len = len;
    rte_mbuf* burst[2] = {mb, mb};
    StateCounts counts;
    state->flows->settle(st, burst, sm, sv, state->now, counts);
    state->flows->sweep(state->now, 8, counts);
    rte_pktmbuf_free(mb);
    MOAT_FUZZ_CHECK(state->flows->in_use() <= state->flows->capacity());
    MOAT_FUZZ_CHECK(counts.created <= 1);
    for (const Verdict& x : sv) {
        // What the state stage changes: a stateful entry's verdict (to a pass or a `state` drop)
        // or, for an ICMP error, a drop to a pass; nothing else.
        if (x.drop == before.drop && x.rank == before.rank)
            continue;
        const bool stateful_entry = before.rank != kNoMatch && st.rules[before.rank].state != StateMode::none;
        const bool related = m.key.has_icmp && x.drop == DropReason::none && x.rank == kNoMatch;
        MOAT_FUZZ_CHECK((stateful_entry && (x.drop == DropReason::state || x.drop == DropReason::none)) || related);
    }
    // A reply entry never passes a packet without a flow: with none in the table, it drops.
    if (state->flows->in_use() == 0 && before.rank != kNoMatch && st.rules[before.rank].state == StateMode::reply)
        MOAT_FUZZ_CHECK(sv[0].drop == DropReason::state);
    return 0;
}
