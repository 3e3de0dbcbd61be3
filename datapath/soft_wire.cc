#include "datapath/transport.h"
