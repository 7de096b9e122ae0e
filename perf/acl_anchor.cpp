#include "perf/acl_anchor.h"

#include <rte_byteorder.h>
#include <rte_errno.h>
#include <rte_malloc.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>

#include "dataplane/trie.h"

namespace moat::perf {

namespace {

enum { kProto, kSrc, kDst, kP1, kP2, kIngress, kFields };

RTE_ACL_RULE_DEF(AclRule, kFields);

const rte_acl_field_def kDefs[kFields] = {
    {RTE_ACL_FIELD_TYPE_BITMASK, sizeof(std::uint8_t), kProto, 0, offsetof(AclKey, proto)},
    {RTE_ACL_FIELD_TYPE_MASK, sizeof(std::uint32_t), kSrc, 1, offsetof(AclKey, src)},
    {RTE_ACL_FIELD_TYPE_MASK, sizeof(std::uint32_t), kDst, 2, offsetof(AclKey, dst)},
    {RTE_ACL_FIELD_TYPE_RANGE, sizeof(std::uint16_t), kP1, 3, offsetof(AclKey, p1)},
    {RTE_ACL_FIELD_TYPE_RANGE, sizeof(std::uint16_t), kP2, 3, offsetof(AclKey, p2)},
    {RTE_ACL_FIELD_TYPE_MASK, sizeof(std::uint32_t), kIngress, 4, offsetof(AclKey, ingress)},
};

std::size_t heap_bytes() {
    std::size_t total = 0;
    for (unsigned s = 0; s < rte_socket_count(); ++s) {
        rte_malloc_socket_stats st{};
        if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(s), &st) == 0)
            total += st.heap_allocsz_bytes;
    }
    return total;
}

}  // namespace

AclKey acl_key(const dp::PacketKey& k) noexcept {
    const dp::TrieKey t = dp::trie_key(k);
    AclKey a{};
    a.proto = k.proto;
    a.src = rte_cpu_to_be_32(t.d[0]);
    a.dst = rte_cpu_to_be_32(t.d[1]);
    a.p1 = rte_cpu_to_be_16(static_cast<std::uint16_t>(t.d[2]));
    a.p2 = rte_cpu_to_be_16(static_cast<std::uint16_t>(t.d[3]));
    a.ingress = rte_cpu_to_be_32(t.d[5]);
    return a;
}

std::unique_ptr<AclAnchor> AclAnchor::build(std::span<const dp::Entry> ranked, std::string& error) {
    static std::atomic<unsigned> serial{0};
    std::unique_ptr<AclAnchor> a(new AclAnchor);
    std::vector<AclRule> rules;
    for (std::size_t r = 0; r < ranked.size(); ++r) {
        const dp::Entry& e = ranked[r];
        if (e.family != dp::Family::ipv4 || e.payload != dp::kNoPayload)
            continue;
        std::uint32_t lo[dp::kMaxDims], hi[dp::kMaxDims];
        dp::rule_ranges(e, lo, hi);
        AclRule x{};
        x.data.category_mask = 1;
        x.data.priority = static_cast<std::int32_t>(RTE_ACL_MAX_PRIORITY - r);
        x.data.userdata = static_cast<std::uint32_t>(r + 1);
        x.field[kProto].value.u8 = static_cast<std::uint8_t>(lo[4]);
        x.field[kProto].mask_range.u8 = lo[4] == hi[4] ? 0xff : 0;
        x.field[kSrc].value.u32 = lo[0];
        x.field[kSrc].mask_range.u32 = e.src_len;
        x.field[kDst].value.u32 = lo[1];
        x.field[kDst].mask_range.u32 = e.dst_len;
        x.field[kP1].value.u16 = static_cast<std::uint16_t>(lo[2]);
        x.field[kP1].mask_range.u16 = static_cast<std::uint16_t>(hi[2]);
        x.field[kP2].value.u16 = static_cast<std::uint16_t>(lo[3]);
        x.field[kP2].mask_range.u16 = static_cast<std::uint16_t>(hi[3]);
        x.field[kIngress].value.u32 = lo[5];
        x.field[kIngress].mask_range.u32 = lo[5] == hi[5] ? 32 : 0;
        rules.push_back(x);
    }
    const std::string name = "moat_anchor_" + std::to_string(serial++);
    rte_acl_param prm{};
    prm.name = name.c_str();
    prm.socket_id = SOCKET_ID_ANY;
    prm.rule_size = RTE_ACL_RULE_SZ(kFields);
    prm.max_rule_num = static_cast<std::uint32_t>(std::max<std::size_t>(rules.size(), 1));

    const std::size_t heap_before = heap_bytes();
    const auto t0 = std::chrono::steady_clock::now();
    a->ctx_ = rte_acl_create(&prm);
    if (!a->ctx_) {
        error = std::string("rte_acl_create: ") + rte_strerror(rte_errno);
        return nullptr;
    }
    if (!rules.empty()) {
        if (const int rc = rte_acl_add_rules(a->ctx_, reinterpret_cast<const rte_acl_rule*>(rules.data()),
                                             static_cast<std::uint32_t>(rules.size()));
            rc != 0) {
            error = std::string("rte_acl_add_rules: ") + rte_strerror(-rc);
            return nullptr;
        }
    }
    rte_acl_config cfg{};
    cfg.num_categories = 1;
    cfg.num_fields = kFields;
    std::memcpy(cfg.defs, kDefs, sizeof kDefs);
    if (const int rc = rte_acl_build(a->ctx_, &cfg); rc != 0) {
        error = std::string("rte_acl_build: ") + rte_strerror(-rc);
        return nullptr;
    }
    a->build_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    a->memory_bytes_ = heap_bytes() - heap_before;

    static constexpr std::pair<enum rte_acl_classify_alg, const char*> kAlgs[] = {
        {RTE_ACL_CLASSIFY_AVX512X32, "avx512x32"}, {RTE_ACL_CLASSIFY_AVX512X16, "avx512x16"},
        {RTE_ACL_CLASSIFY_AVX2, "avx2"},           {RTE_ACL_CLASSIFY_SSE, "sse"},
        {RTE_ACL_CLASSIFY_SCALAR, "scalar"},
    };
    for (const auto& [alg, alg_name] : kAlgs)
        if (rte_acl_set_ctx_classify(a->ctx_, alg) == 0) {
            a->alg_name_ = alg_name;
            break;
        }
    return a;
}

AclAnchor::~AclAnchor() { rte_acl_free(ctx_); }

void AclAnchor::classify(const std::uint8_t* const* data, dp::Rank* results, std::uint32_t n) const {
    static_assert(sizeof(dp::Rank) == sizeof(std::uint32_t));
    rte_acl_classify(ctx_, const_cast<const std::uint8_t**>(data), results, n, 1);
    for (std::uint32_t i = 0; i < n; ++i)
        results[i] = results[i] == 0 ? dp::kNoMatch : results[i] - 1;
}

}  // namespace moat::perf
