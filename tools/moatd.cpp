// moatd: the appliance (see control/runtime/daemon.h).
#include "control/runtime/daemon.h"

int main(int argc, char** argv) { return moat::ctl::run_moatd(argc, argv); }
