// `moatctl ipsecpol` in-process: edits keep the operator's text, nothing invalid is written.
#include "control/compile/ipsecpol.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/config/ini_edit.h"

namespace moat::ctl {
namespace {

namespace fs = std::filesystem;

class Ipsecpol : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("ipsecpol_test." + std::to_string(getpid()) + "." +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        path_ = (dir_ / "moat.ini").string();
    }
    void TearDown() override { fs::remove_all(dir_); }

    int run(std::vector<std::string> args) {
        args.insert(args.begin(), {"--config", path_});
        out_.str("");
        err_.str("");
        return run_ipsecpol(args, out_, err_);
    }

    std::string file() const {
        std::ifstream in(path_);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
    void write(const std::string& t) const { std::ofstream(path_) << t; }

    fs::path dir_;
    std::string path_;
    std::ostringstream out_, err_;
};

TEST_F(Ipsecpol, CreatesAValidConfig) {
    ASSERT_EQ(run({"-w", "REG", "-p", "P", "-r", "Web", "-f", "*+198.18.0.10:80:TCP", "-n", "PASS"}), 0) << err_.str();
    const auto r = load_policy(path_);
    ASSERT_TRUE(r.config) << err_.str();
    ASSERT_EQ(r.config->policies.size(), 1u);
    EXPECT_EQ(r.config->policies[0].name, "P");
    EXPECT_EQ(r.config->policies[0].rules[0].text, "Web -> permit");
    EXPECT_EQ(r.config->lists[0].filters[0].text, "*+198.18.0.10:80:TCP");
    EXPECT_EQ(r.config->assigned, -1);  // -x not given yet
}

TEST_F(Ipsecpol, RerunningACommandChangesNothing) {
    const std::vector<std::string> cmd{"-w", "REG", "-p", "P", "-r", "Web", "-f", "*+198.18.0.10:80:TCP", "-n", "PASS"};
    ASSERT_EQ(run(cmd), 0);
    const std::string once = file();
    ASSERT_EQ(run(cmd), 0);
    EXPECT_EQ(file(), once);
}

TEST_F(Ipsecpol, ChangingTheActionRewritesTheRule) {
    ASSERT_EQ(run({"-w", "REG", "-p", "P", "-r", "Web", "-f", "*+198.18.0.10:80:TCP", "-n", "PASS"}), 0);
    ASSERT_EQ(run({"-w", "REG", "-p", "P", "-r", "Web", "-n", "BLOCK"}), 0) << err_.str();
    const auto r = load_policy(path_);
    ASSERT_TRUE(r.config);
    ASSERT_EQ(r.config->policies[0].rules.size(), 1u);
    EXPECT_EQ(r.config->policies[0].rules[0].text, "Web -> block");
}

TEST_F(Ipsecpol, PortZeroMeansAnyPortAsInWindows) {
    ASSERT_EQ(run({"-w", "REG", "-p", "P", "-r", "Net", "-f", "10.0.11.0/255.255.255.0+131.107.1.1:0:TCP", "-n", "PASS"}), 0)
        << err_.str();
    EXPECT_NE(file().find("filter = 10.0.11.0/255.255.255.0+131.107.1.1::TCP\n"), std::string::npos) << file();
    EXPECT_NE(out_.str().find("port 0 means any port (as in Windows)"), std::string::npos) << out_.str();
    const auto r = load_policy(path_);
    ASSERT_TRUE(r.config);
    EXPECT_TRUE(r.config->lists[0].filters[0].spec.dport.any);
}

TEST_F(Ipsecpol, SaysWhenNothingChangedAndWhatAnActionChangeReaches) {
    const std::vector<std::string> both{"-w", "REG", "-p", "P", "-r", "Web", "-f", "*+198.18.0.10:80:TCP", "*+198.18.0.10:443:TCP", "-n", "PASS"};
    ASSERT_EQ(run(both), 0);
    EXPECT_NE(out_.str().find("created " + path_), std::string::npos) << out_.str();
    ASSERT_EQ(run(both), 0);
    EXPECT_NE(out_.str().find("nothing to change in " + path_), std::string::npos) << out_.str();
    EXPECT_EQ(out_.str().find("updated"), std::string::npos) << out_.str();
    // Blocking one filter of the rule blocks the whole list: said, with the count.
    ASSERT_EQ(run({"-w", "REG", "-p", "P", "-r", "Web", "-f", "*+198.18.0.10:80:TCP", "-n", "BLOCK"}), 0);
    EXPECT_NE(out_.str().find("now has action block (was permit); it applies to the whole filter list 'Web', so also to its 1 other filter"),
              std::string::npos)
        << out_.str();
    EXPECT_NE(out_.str().find("updated " + path_), std::string::npos) << out_.str();
}

TEST_F(Ipsecpol, ErrorsQuoteTheSpecAsTyped) {
    // Port 0 is rewritten only where the result is a filter; an error quotes what was typed.
    EXPECT_NE(run({"-w", "REG", "-p", "P", "-r", "Web", "-f", "2001:0::1+*", "-n", "PASS"}), 0);
    EXPECT_NE(err_.str().find("filter '2001:0::1+*'"), std::string::npos) << err_.str();
    EXPECT_FALSE(fs::exists(path_)) << "nothing written";
}

TEST_F(Ipsecpol, AnActionOfTheSameMeaningIsNoChange) {
    write("[appliance]\nassign = P\n[filteraction Allow]\naction = permit\n[filterlist Web]\nfilter = *+198.18.0.10:80:TCP\n"
          "[policy P]\nrule = Web -> Allow\n");
    const std::string before = file();
    ASSERT_EQ(run({"-w", "REG", "-p", "P", "-r", "Web", "-f", "*+198.18.0.10:80:TCP", "-n", "PASS"}), 0) << err_.str();
    EXPECT_NE(out_.str().find("rule 'Web' of policy 'P' already has action permit (through 'Allow')"), std::string::npos) << out_.str();
    EXPECT_NE(out_.str().find("nothing to change in"), std::string::npos) << out_.str();
    EXPECT_EQ(file(), before);
}

TEST_F(Ipsecpol, ANewFileLeavesPortsAndMeForTheOperatorToSet) {
    ASSERT_EQ(run({"-w", "REG", "-p", "P", "-r", "Web", "-f", "*+198.18.0.10:80:TCP", "-n", "PASS", "-x"}), 0) << err_.str();
    const std::string t = file();
    EXPECT_NE(t.find("\n; outside = "), std::string::npos) << t;
    EXPECT_NE(t.find("\n; inside  = "), std::string::npos) << t;
    EXPECT_NE(t.find("\n; me      = "), std::string::npos) << t;
    const auto r = load_policy(path_);
    ASSERT_TRUE(r.config);
    EXPECT_TRUE(r.config->appliance.outside.empty()) << "no test-bed port written silently";
    EXPECT_TRUE(r.config->appliance.me.empty());
}

TEST_F(Ipsecpol, KeepsCommentsAndLayout) {
    write("; my firewall\n[appliance]\nme = 198.18.0.10   ; the web server\nassign =\n\n"
          "; web things\n[filterlist Web]\nfilter = *+0:80:TCP\n\n[policy P]\nrule = Web -> permit\n");
    ASSERT_EQ(run({"-w", "REG", "-p", "P", "-r", "Rest", "-f", "*+0", "-n", "BLOCK"}), 0) << err_.str();
    ASSERT_EQ(run({"-w", "REG", "-p", "P", "-x"}), 0) << err_.str();
    EXPECT_EQ(file(),
              "; my firewall\n[appliance]\nme = 198.18.0.10   ; the web server\nassign = P\n\n"
              "; web things\n[filterlist Web]\nfilter = *+0:80:TCP\n\n[filterlist Rest]\nfilter = *+0\n\n"
              "[policy P]\nrule = Web -> permit\nrule = Rest -> block\n");
}

TEST_F(Ipsecpol, UnassignAndDelete) {
    ASSERT_EQ(run({"-w", "REG", "-p", "P", "-r", "Web", "-f", "*+198.18.0.10:80:TCP", "-n", "PASS"}), 0);
    ASSERT_EQ(run({"-w", "REG", "-p", "Q", "-r", "Web", "-n", "BLOCK"}), 0) << err_.str();
    ASSERT_EQ(run({"-w", "REG", "-p", "Q", "-r", "Only Q", "-f", "*+198.18.0.20", "-n", "BLOCK"}), 0);
    ASSERT_EQ(run({"-w", "REG", "-p", "Q", "-x"}), 0);
    EXPECT_EQ(load_policy(path_).config->appliance.assign, "Q");
    ASSERT_EQ(run({"-w", "REG", "-p", "P", "-y"}), 0);  // P is not assigned: nothing changes
    EXPECT_EQ(load_policy(path_).config->appliance.assign, "Q");
    EXPECT_NE(out_.str().find("was not assigned"), std::string::npos);
    ASSERT_EQ(run({"-w", "REG", "-p", "Q", "-o"}), 0) << err_.str();
    const auto r = load_policy(path_);
    ASSERT_TRUE(r.config);
    EXPECT_EQ(r.config->appliance.assign, "");
    ASSERT_EQ(r.config->policies.size(), 1u);
    // "Web" is still used by P and stays; "Only Q" went with Q.
    ASSERT_EQ(r.config->lists.size(), 1u);
    EXPECT_EQ(r.config->lists[0].name, "Web");
}

TEST_F(Ipsecpol, PastedTypographyIsReadAsAscii) {
    // An en dash before each flag and curly quotes that the shell split at the space.
    ASSERT_EQ(run({"\u2013w", "REG", "\u2013p", "\u201cPacket", "Filter\u201d", "\u2013r", "\u201cInbound", "web",
                   "protocols\u201d", "\u2013f", "*+198.18.0.10:80:TCP", "\u2014n", "PASS"}),
              0)
        << err_.str();
    const auto r = load_policy(path_);
    ASSERT_TRUE(r.config);
    EXPECT_EQ(r.config->policies[0].name, "Packet Filter");
    EXPECT_EQ(r.config->lists[0].name, "Inbound web protocols");
}

TEST_F(Ipsecpol, PollIntervalIsIgnored) {
    ASSERT_EQ(run({"-w", "REG", "-p", "Packet Filter:180", "-r", "W", "-f", "*+198.18.0.1", "-n", "BLOCK"}), 0);
    EXPECT_EQ(load_policy(path_).config->policies[0].name, "Packet Filter");
}

struct Bad {
    std::vector<std::string> args;
    int status;
    const char* message;
};

TEST_F(Ipsecpol, RejectsAndLeavesTheFileAlone) {
    write("[appliance]\nassign =\n");
    const std::string before = file();
    const std::vector<Bad> cases{
        {{"-p", "P", "-r", "W", "-f", "*+0", "-n", "PASS"}, 2, "-w REG is required"},
        {{"-w", "DS:corp", "-p", "P", "-x"}, 2, "only -w REG is supported"},
        {{"-w", "REG", "-r", "W", "-f", "*+198.18.0.1", "-n", "PASS"}, 2, "-p POLICY is required"},
        {{"-w", "REG", "-p", "P", "-f", "*+198.18.0.1", "-n", "PASS"}, 2, "-f needs -r RULE"},
        {{"-w", "REG", "-p", "P", "-r", "W", "-f", "*+198.18.0.1", "-n", "INPASS"}, 2, "-n INPASS needs IPSec negotiation"},
        {{"-w", "REG", "-p", "P", "-r", "W", "-f", "*+198.18.0.1", "-n", "ESP[3DES,SHA]"}, 2, "use PASS or BLOCK"},
        {{"-w", "REG", "-p", "P", "-r", "W", "-f", "*+198.18.0.1", "-n", "PASS", "-t", "1.2.3.4"}, 2, "-t is not supported"},
        {{"-w", "REG", "-p", "P", "-x", "-y"}, 2, "-x and -y contradict"},
        {{"-w", "REG", "-p", "P", "-o", "-r", "W"}, 2, "-o deletes the policy"},
        {{"-w", "REG", "-p", "P"}, 2, "nothing to do"},
        {{"-w", "REG", "-p", "a->b", "-x"}, 2, "must not contain '->'"},
        {{"-w", "REG", "-p", "P", "-r", "W", "-f", "*+198.18.0.300", "-n", "PASS"}, 1, "is not an IPv4 address"},
        {{"-w", "REG", "-p", "P", "-r", "W", "-f", "*+0:80:TCP", "-n", "PASS"}, 1, "[appliance] me is empty"},
        {{"-w", "REG", "-p", "P", "-r", "W", "-f", "*+198.18.0.1"}, 1, "give its action with -n PASS|BLOCK"},
        {{"-w", "REG", "-p", "Nope", "-x"}, 1, "policy 'Nope' does not exist"},
        {{"-w", "REG", "-p", "Nope", "-o"}, 1, "policy 'Nope' does not exist"},
    };
    for (const auto& c : cases) {
        EXPECT_EQ(run(c.args), c.status) << c.message;
        EXPECT_NE(err_.str().find(c.message), std::string::npos) << "expected '" << c.message << "' in\n" << err_.str();
        EXPECT_EQ(file(), before) << c.message;
    }
}

TEST(IniText, EditsOnlyWhatItIsAskedTo) {
    IniText t("; head\n[appliance]\nassign = A ; keep me\n\n[policy A]\nrule = X -> permit\n");
    const auto a = t.find_section("APPLIANCE", "");
    ASSERT_TRUE(a);
    t.set_key(*a, "assign", "B");
    t.set_key(*a, "me", "198.18.0.1");
    EXPECT_EQ(t.str(), "; head\n[appliance]\nassign = B ; keep me\nme = 198.18.0.1\n\n[policy A]\nrule = X -> permit\n");
    const auto p = t.find_section("policy", "A");
    ASSERT_TRUE(p);
    EXPECT_EQ(t.entries(*p).size(), 1u);
    EXPECT_EQ(t.entries(*p)[0].value, "X -> permit");
    t.remove_section(*p);
    EXPECT_EQ(t.str(), "; head\n[appliance]\nassign = B ; keep me\nme = 198.18.0.1\n");
    EXPECT_FALSE(t.find_section("policy", "A"));
}

TEST(IniText, KeepsTheAlignmentOfTheLineItChanges) {
    IniText t("[appliance]\nAssign     = Test bed servers\nme         = 198.18.0.1\n");
    const auto a = t.find_section("appliance", "");
    ASSERT_TRUE(a);
    t.set_key(*a, "assign", "");
    EXPECT_EQ(t.str(), "[appliance]\nAssign     =\nme         = 198.18.0.1\n");
    t.set_key(*a, "assign", "Test bed servers");
    EXPECT_EQ(t.str(), "[appliance]\nAssign     = Test bed servers\nme         = 198.18.0.1\n") << "back byte for byte";
}

TEST(IniText, WriteIsAtomicAndKeepsTheMode) {
    const fs::path dir = fs::temp_directory_path() / ("initext." + std::to_string(getpid()));
    fs::create_directories(dir);
    const std::string f = (dir / "c.ini").string();
    std::ofstream(f) << "old\n";
    fs::permissions(f, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
    ASSERT_TRUE(write_file_atomic(f, "new\n"));
    std::ifstream in(f);
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "new");
    EXPECT_EQ(fs::status(f).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
    EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 1);  // no temp file left
    EXPECT_FALSE(write_file_atomic((dir / "missing" / "c.ini").string(), "x"));
    fs::remove_all(dir);
}

TEST(IniText, RefusesLineBreaksAndNulWhoeverAsks) {
    // A value with a line break would become lines of its own: a section, an [appliance] key.
    IniText t("[appliance]\nassign = A\n[policy A]\nrule = X -> permit\n");
    const std::string before = t.str();
    const auto a = *t.find_section("appliance", "");
    for (const std::string& evil : {std::string("B\n[filterlist E]\nfilter = *+*"), std::string("B\rantispoof = off"),
                                    std::string("B\r\neal = -d x.so"), std::string("B\0x", 3)}) {
        EXPECT_THROW(t.set_key(a, "assign", evil), std::invalid_argument) << evil;
        EXPECT_THROW(t.append_entry(a, "assign", evil), std::invalid_argument);
        EXPECT_THROW(t.replace_entry(a + 1, "assign", evil), std::invalid_argument);
        EXPECT_THROW(t.set_key(a, evil, "x"), std::invalid_argument) << "as a key";
        EXPECT_THROW(t.add_section("policy", evil, {}), std::invalid_argument) << "as a section name";
        EXPECT_THROW(t.add_section("policy", "P", {"rule = " + evil}), std::invalid_argument) << "as a line";
        EXPECT_EQ(t.str(), before);
    }
}

TEST(IniText, WriteGoesThroughSymbolicLinksAndKeepsOwnerAndGroup) {
    const fs::path dir = fs::temp_directory_path() / ("initext-link." + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir / "real");
    const fs::path target = dir / "real" / "moat.ini";
    std::ofstream(target) << "old\n";
    fs::create_symlink("real/moat.ini", dir / "hop");
    fs::create_symlink(dir / "hop", dir / "moat.ini");  // a link to a link
    const uid_t owner = geteuid() == 0 ? 65534 : geteuid();
    const gid_t group = geteuid() == 0 ? 65534 : getegid();
    ASSERT_EQ(chown(target.c_str(), owner, group), 0);
    ASSERT_EQ(chmod(target.c_str(), 0640), 0);
    ASSERT_TRUE(write_file_atomic((dir / "moat.ini").string(), "new\n"));
    EXPECT_TRUE(fs::is_symlink(dir / "moat.ini"));
    EXPECT_TRUE(fs::is_symlink(dir / "hop"));
    std::ifstream in(target);
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "new");
    struct stat st {};
    ASSERT_EQ(stat(target.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, owner);
    EXPECT_EQ(st.st_gid, group);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_EQ(std::distance(fs::directory_iterator(dir / "real"), fs::directory_iterator{}), 1);  // no temp file
    // A loop of links is an error, not a hang.
    fs::create_symlink(dir / "loop2", dir / "loop1");
    fs::create_symlink(dir / "loop1", dir / "loop2");
    EXPECT_FALSE(write_file_atomic((dir / "loop1").string(), "x"));
    fs::remove_all(dir);
}

}  // namespace
}  // namespace moat::ctl
