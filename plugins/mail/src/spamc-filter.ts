/**
 * The after-queue SpamAssassin filter Postfix pipes each message through (the
 * `scoped-spamassassin` service in master.cf): spamc asks spamd to mark the message, and the
 * marked message goes back into Postfix through the filter-return listener, which neither
 * filters nor runs milters again. SpamAssassin never refuses mail: spam is delivered with
 * X-Spam-Flag: YES, as the reference docs describe, and no delivery status notice comes of it.
 * Any failure exits 75 (EX_TEMPFAIL) so Postfix keeps the message and tries again later.
 * With --rspamc and --controller (rspamd beside SpamAssassin, "piggyback"), each message is also
 * fed to rspamd's learner as spam or ham by SpamAssassin's verdict; a failed lesson never holds
 * up delivery.
 */

/** Where the plan writes the script, inside the root. */
export const SPAMC_FILTER = '/usr/local/libexec/scoped/spamc-filter';

/** The Postfix service (master.cf) that runs the script, and the content_filter that names it. */
export const FILTER_SERVICE = 'scoped-spamassassin';

export const SPAMC_FILTER_SCRIPT = `#!/usr/bin/perl
# Written by scoped (mail.spam-filter); scoped rewrites or removes this file.
# Postfix pipes each message here after the queue: spamc has spamd mark it, and it goes back into
# Postfix through the filter-return listener. Any failure exits 75 (tempfail): Postfix retries.
# Usage: spamc-filter --spamc PATH --spamd HOST:PORT --return HOST:PORT
#        [--rspamc PATH --controller HOST:PORT] -f SENDER -- RECIPIENT...
use strict;
use warnings;
use File::Temp ();
use Getopt::Long qw(GetOptionsFromArray);
use Net::SMTP;

use constant EX_TEMPFAIL => 75;

sub fail { print STDERR "spamc-filter: @_\\n"; exit EX_TEMPFAIL; }

my %opt;
GetOptionsFromArray(\\@ARGV, \\%opt, 'spamc=s', 'spamd=s', 'return=s', 'rspamc=s', 'controller=s', 'f=s')
  or fail('bad arguments');
for my $need (qw(spamc spamd return f)) { fail("--$need is missing") unless defined $opt{$need}; }
my @recipients = @ARGV;
fail('no recipients') unless @recipients;
my ($spamd_host, $spamd_port) = $opt{spamd} =~ /^(.+):(\\d+)$/ or fail("--spamd $opt{spamd} is not HOST:PORT");
my ($return_host, $return_port) = $opt{return} =~ /^(.+):(\\d+)$/ or fail("--return $opt{return} is not HOST:PORT");

# The message goes to a private temporary file first: spamc and rspamc read it from there.
my $original = File::Temp->new(TMPDIR => 1);
binmode STDIN;
binmode $original;
{ local $/ = \\65536; while (my $chunk = <STDIN>) { print {$original} $chunk or fail("cannot write a temporary file: $!"); } }
close $original or fail("cannot write a temporary file: $!");

# spamc -x: an unreachable spamd is a failure (tempfail), never a message passed on unmarked.
open(my $in, '<', $original->filename) or fail("cannot read the temporary file: $!");
open(my $saved_stdin, '<&', \\*STDIN) or fail("cannot dup stdin: $!");
open(STDIN, '<&', $in) or fail("cannot redirect stdin: $!");
my $pid = open(my $marked, '-|', $opt{spamc}, '-x', '-d', $spamd_host, '-p', $spamd_port);
open(STDIN, '<&', $saved_stdin);
fail("cannot run $opt{spamc}: $!") unless $pid;
binmode $marked;
my $message = do { local $/; <$marked> };
close $marked;
fail('spamc failed with status ' . ($? >> 8) . ' (is spamd running?)') if $? != 0 || !defined $message || $message eq '';

my ($headers) = split /\\r?\\n\\r?\\n/, $message, 2;
my $spam = $headers =~ /^X-Spam-Flag:[ \\t]*YES/mi;

if (defined $opt{rspamc} && defined $opt{controller}) {
  # rspamd learns from SpamAssassin's verdict; its answer goes nowhere, a failure only to the log.
  my $learn = fork;
  if (defined $learn && $learn == 0) {
    open(STDOUT, '>', '/dev/null');
    open(STDIN, '<', '/dev/null');
    exec { $opt{rspamc} } $opt{rspamc}, '-h', $opt{controller}, $spam ? 'learn_spam' : 'learn_ham', $original->filename;
    exit 1;
  }
  waitpid($learn, 0) if defined $learn;
  print STDERR "spamc-filter: rspamd did not learn the message (status " . ($? >> 8) . ")\\n" if !defined $learn || $? != 0;
}

my $smtp = Net::SMTP->new($return_host, Port => $return_port, Hello => 'localhost', Timeout => 60)
  or fail("cannot connect to Postfix's filter-return listener at $opt{return}: $@");
$smtp->mail($opt{f}) or fail('MAIL FROM refused: ' . $smtp->message);
for my $rcpt (@recipients) { $smtp->to($rcpt) or fail("RCPT TO <$rcpt> refused: " . $smtp->message); }
$smtp->data or fail('DATA refused: ' . $smtp->message);
$message =~ s/\\r\\n/\\n/g;
$smtp->datasend($message) or fail('sending the message failed');
$smtp->dataend or fail('the message was refused: ' . $smtp->message);
$smtp->quit;
exit 0;
`;
