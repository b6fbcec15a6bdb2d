#!/usr/bin/perl
# Verify a message's DKIM signatures with Mail::DKIM (Debian's libmail-dkim-perl), an implementation
# independent of the signer's, against the one TXT record given instead of DNS.
# Usage: dkim-verify.pl 'SELECTOR._domainkey.DOMAIN. IN TXT ( "v=DKIM1; ..." "p=..." )' < message
# Prints the verifier's result and detail, one signature a line, then the overall result;
# exits 0 when the overall result is pass, 1 otherwise, 2 on bad usage.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS;

my $zone = shift @ARGV;
die "usage: $0 'NAME IN TXT ( \"...\" )' < message\n" unless defined $zone && !@ARGV;
# Net::DNS reads the record as a zone file line does.
(my $line = $zone) =~ s/[\r\n]+/ /g;
my $rr = Net::DNS::RR->new($line);
die "not a TXT record: $zone\n" unless $rr->type eq 'TXT';
my $owner = lc $rr->owner;
$owner =~ s/\.$//;

# No DNS: the given record answers its own name, every other name is NXDOMAIN.
{
    no warnings 'redefine';
    *Mail::DKIM::DNS::query = sub {
        my ($name, $type) = @_;
        $name = lc $name;
        $name =~ s/\.$//;
        return ($rr) if $type eq 'TXT' && $name eq $owner;
        $@ = 'NXDOMAIN';
        return;
    };
}

my $dkim = Mail::DKIM::Verifier->new();
binmode STDIN;
while (my $l = <STDIN>) {
    $l =~ s/\r?\n\z/\r\n/;
    $dkim->PRINT($l);
}
$dkim->CLOSE;
for my $sig ($dkim->signatures) {
    printf "signature d=%s s=%s a=%s: %s%s\n", $sig->domain, $sig->selector, $sig->algorithm, $sig->result,
      ($sig->result_detail ne $sig->result ? " (" . $sig->result_detail . ")" : '');
}
print "result: ", $dkim->result, ($dkim->result_detail ne $dkim->result ? " (" . $dkim->result_detail . ")" : ''), "\n";
exit($dkim->result eq 'pass' ? 0 : 1);
