// moatd: the appliance (see control/daemon.h).
#include "control/daemon.h"

int main(int argc, char** argv) { return moat::ctl::run_moatd(argc, argv); }
