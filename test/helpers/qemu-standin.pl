#!/usr/bin/perl
# A stand-in for qemu-system-x86_64 with no guest: bench/control-plane.ts (issue 11's
# control-plane rate) and test/integration/qemu-standin.test.ts hand it to the daemon as
# `qemu-bin`, and the real QEMU provider starts it with the real command line through the real
# launch chain (cgroup join, tap stage, setpriv). It does what QEMU does that the daemon depends on,
# and nothing more:
#   - each `-netdev tap,...,fd=N` fd must be an attached tap (TUNGETIFF, as QEMU's tap_fd_get_ifname
#     and vnet-header probe do): else it exits 1 as QEMU would; `ifname=NAME` opens the tap itself
#     (TUNSETIFF on /dev/net/tun). The fds stay open until it exits, so the taps stay attached
#     (carrier on) as long as the "VMM" runs;
#   - `-kernel`, `-initrd` and every `-drive file=` must be readable; the `-chardev file` console is
#     opened for appending; `-pidfile` is written when given;
#   - QMP on the `-qmp unix:PATH,server=on,wait=off` socket: the greeting, capabilities negotiation
#     (other commands refused before it, as QEMU does), query-status (running / paused), stop, cont,
#     system_powerdown (a guest that powers off at once: POWERDOWN, SHUTDOWN, exit 0, as QEMU with
#     -no-reboot; a paused guest ignores it) and quit. One client at a time, like QEMU's monitor;
#   - then it waits (SIGTERM or SIGKILL end it, as they end QEMU).
# Why Perl: it has to be cheap to start (the goal is 150 VMs a second on 2 cores; Node's start-up
# alone is ~40 ms of CPU), it must ioctl (TUNGETIFF/TUNSETIFF) and serve a unix socket, which a
# shell can't, and perl-base is Essential on Debian (the launch chain already runs it). No modules
# beyond strict (Socket, POSIX or IO::Socket cost 2-10 ms of CPU each to load here): builtins with
# Linux's numeric constants. QMP lines are matched, not parsed: the provider sends one command object
# per line.
use strict;

my $AF_UNIX = 1;
my $SOCK_STREAM = 1;
my $O_RDWR = 2;
my $TUNSETIFF = 0x400454ca;
my $TUNGETIFF = 0x800454d2;
my $IFF_TAP_NO_PI_VNET_HDR = 0x5002;

sub fail { print STDERR "qemu-system-x86_64: $_[0]\n"; exit 1 }

# A QEMU option value: comma-separated key=value pairs, ",," an escaped comma.
sub opts {
  my ($text) = @_;
  my %o;
  my @parts = split /,(?!,)/, $text;
  my $first = 1;
  for my $p (@parts) {
    $p =~ s/,,/,/g;
    if ($p =~ /^([^=]+)=(.*)$/s) { $o{$1} = $2 } elsif ($first) { $o{''} = $p } else { $o{$p} = 'on' }
    $first = 0;
  }
  return \%o;
}

my ($qmp, $pidfile, @keep);
my @files;
while (@ARGV) {
  my $opt = shift @ARGV;
  next if $opt =~ /^-(nodefaults|no-user-config|nographic|no-reboot|no-shutdown|S)$/;    # flags
  $opt =~ /^-/ or fail("$opt: not an option");
  my $val = shift @ARGV;
  fail("option $opt requires an argument") unless defined $val;
  if ($opt eq '-qmp') {
    $val =~ /^unix:(.*)$/s or fail("-qmp $val: only unix: sockets in this stand-in");
    my $o = opts($1);
    $qmp = $o->{''};
  } elsif ($opt eq '-pidfile') {
    $pidfile = $val;
  } elsif ($opt eq '-kernel' || $opt eq '-initrd') {
    push @files, $val;
  } elsif ($opt eq '-drive') {
    my $o = opts($val);
    push @files, $o->{file} if defined $o->{file};
  } elsif ($opt eq '-chardev') {
    my $o = opts($val);
    if (($o->{''} // '') eq 'file' && defined $o->{path}) {
      open(my $fh, '>>', $o->{path}) or fail("-chardev $val: Could not open '$o->{path}': $!");
      push @keep, $fh;
    }
  } elsif ($opt eq '-netdev') {
    my $o = opts($val);
    next unless ($o->{''} // '') eq 'tap';
    my $ifr = pack('a16 s x22', '', 0);
    if (defined $o->{fd}) {
      $o->{fd} =~ /^\d+$/ or fail("-netdev $val: bad fd");
      open(my $tap, '+<&=', $o->{fd}) or fail("-netdev $val: fd $o->{fd}: $!");
      ioctl($tap, $TUNGETIFF, $ifr) or fail("-netdev $val: fd $o->{fd} is not an attached tap: $!");
      push @keep, $tap;
    } elsif (defined $o->{ifname}) {
      sysopen(my $tun, '/dev/net/tun', $O_RDWR) or fail("could not open /dev/net/tun: $!");
      ioctl($tun, $TUNSETIFF, pack('a16 s x22', $o->{ifname}, $IFF_TAP_NO_PI_VNET_HDR)) or fail("could not configure /dev/net/tun ($o->{ifname}): $!");
      push @keep, $tun;
    } else {
      fail("-netdev $val: fd= or ifname= required by this stand-in");
    }
  }
}
defined $qmp or fail('this stand-in needs -qmp unix:PATH');
for my $f (@files) { -r $f or fail("could not open '$f': $!") }
if (defined $pidfile) {
  open(my $pf, '>', $pidfile) or fail("cannot create PID file: $!");
  print $pf "$$\n";
  close $pf;
}

unlink $qmp;
socket(my $srv, $AF_UNIX, $SOCK_STREAM, 0) or fail("socket: $!");
bind($srv, pack('S', $AF_UNIX) . $qmp . "\0") or fail("-qmp: Failed to bind socket to $qmp: $!");
listen($srv, 16) or fail("listen: $!");

my $status = 'running';
sub event { my $extra = $_[1] // ''; return '{"timestamp": {"seconds": ' . time() . ', "microseconds": 0}, "event": "' . $_[0] . "\"$extra}\r\n" }
sub answer {
  my ($line, $negotiated) = @_;
  my ($cmd) = $line =~ /"execute"\s*:\s*"([^"]*)"/;
  my ($id) = $line =~ /"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)/;
  my $tail = defined $id ? ", \"id\": $id}\r\n" : "}\r\n";
  my $ok = '{"return": {}' . $tail;
  return ('{"error": {"class": "GenericError", "desc": "JSON parse error, missing \'execute\'"}' . $tail, 0) unless defined $cmd;
  if (!$$negotiated) {
    if ($cmd eq 'qmp_capabilities') { $$negotiated = 1; return ($ok, 0) }
    return ("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}$tail", 0);
  }
  if ($cmd eq 'query-status') {
    my $running = $status eq 'running' ? 'true' : 'false';
    return ("{\"return\": {\"status\": \"$status\", \"singlestep\": false, \"running\": $running}$tail", 0);
  }
  if ($cmd eq 'stop') { my $was = $status; $status = 'paused'; return ($ok . ($was eq 'running' ? event('STOP') : ''), 0) }
  if ($cmd eq 'cont') { my $was = $status; $status = 'running'; return ($ok . ($was eq 'paused' ? event('RESUME') : ''), 0) }
  if ($cmd eq 'system_powerdown') {
    return ($ok . event('POWERDOWN'), 0) if $status ne 'running';
    return ($ok . event('POWERDOWN') . event('SHUTDOWN', ', "data": {"guest": true, "reason": "guest-shutdown"}'), 1);
  }
  if ($cmd eq 'quit') { return ($ok . event('SHUTDOWN', ', "data": {"guest": false, "reason": "host-qmp-quit"}'), 1) }
  if ($cmd eq 'qmp_capabilities') {
    return ("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Capabilities negotiation is already complete, command ignored\"}$tail", 0);
  }
  return ("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command $cmd has not been found\"}$tail", 0);
}

for (;;) {
  accept(my $c, $srv) or next;
  syswrite($c, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"flintlock-ts stand-in\"}, \"capabilities\": [\"oob\"]}}\r\n");
  my ($buf, $negotiated, $exit) = ('', 0, 0);
  while (!$exit && sysread($c, $buf, 4096, length $buf)) {
    while (!$exit && $buf =~ s/^([^\n]*)\n//) {
      my $line = $1;
      next if $line =~ /^\s*$/;
      (my $out, $exit) = answer($line, \$negotiated);
      syswrite($c, $out);
    }
  }
  close $c;
  if ($exit) { unlink $qmp; exit 0 }
}
