"""A throwaway OpenLDAP server for tests: Debian's slapd started with a
cn=config directory made here by slapadd (mdb database in a temp dir),
on a loopback port, never the system's /etc/ldap/slapd.d; stopped by pid.
Its stats log (-d 256) lets a test count the searches it ran."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import urllib.parse

from harness import free_port, port_open, test_cert, wait_for

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SUFFIX = "dc=example,dc=test"
ADMIN_DN = "cn=admin," + SUFFIX
ADMIN_PW = "adminsecret"


def slapd_available():
    """None when slapd can run here, else why not."""
    for p in (SLAPD, SLAPADD, "/etc/ldap/schema/nis.ldif", "/usr/lib/ldap/back_mdb.so"):
        if not os.path.exists(p):
            return "%s missing (scripts/deps.sh test installs slapd)" % p
    return None


CONFIG = """dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {dir}/slapd.pid
olcTLSCertificateFile: {cert}
olcTLSCertificateKeyFile: {key}

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/nis.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif
include: file:///etc/ldap/schema/misc.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {dir}/db
olcSuffix: {suffix}
olcRootDN: {admin}
olcRootPW: {adminpw}
olcDbMaxSize: 10485760
olcAccess: {{0}}to attrs=userPassword by dn.exact="{admin}" read by anonymous auth by self read by * none
olcAccess: {{1}}to * by users read by * none
"""


def user_ldif(name, uid, password, home, mail_host=None, mails=()):
    lines = ["dn: uid=%s,ou=people,%s" % (name, SUFFIX),
             "objectClass: inetOrgPerson", "objectClass: posixAccount", "objectClass: inetLocalMailRecipient",
             "uid: %s" % name, "cn: %s" % name, "sn: %s" % name,
             "uidNumber: %d" % uid, "gidNumber: %d" % uid, "homeDirectory: %s" % home,
             "userPassword: %s" % password]
    for m in mails:
        lines.append("mail: %s" % m)
    if mail_host:
        lines.append("mailHost: %s" % mail_host)
    return "\n".join(lines) + "\n\n"


def alias_ldif(name, members):
    lines = ["dn: cn=%s,ou=aliases,%s" % (name, SUFFIX), "objectClass: nisMailAlias", "cn: %s" % name]
    lines += ["rfc822MailMember: %s" % m for m in members]
    return "\n".join(lines) + "\n\n"


def transport_ldif(key, value, ou="transport"):
    return ("dn: cn=%s,ou=%s,%s\nobjectClass: applicationProcess\ncn: %s\ndescription: %s\n\n"
            % (key, ou, SUFFIX, key, value))


def base_ldif():
    out = "dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: test\ndc: example\n\n" % SUFFIX
    for ou in ("people", "aliases", "transport", "access"):
        out += "dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n" % (ou, SUFFIX, ou)
    return out


class Slapd:
    def __init__(self, data_ldif):
        self.dir = tempfile.mkdtemp(prefix="postern-slapd-")
        # the ldapi socket is reached by the daemon's user too
        os.chmod(self.dir, 0o711)
        self.port = free_port()
        self.tls_port = free_port()
        self.cert, self.key = test_cert()
        self.proc = None
        self.log_path = os.path.join(self.dir, "slapd.log")
        os.makedirs(os.path.join(self.dir, "db"), mode=0o700)
        os.makedirs(os.path.join(self.dir, "slapd.d"), mode=0o700)
        cfg = os.path.join(self.dir, "config.ldif")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(dir=self.dir, suffix=SUFFIX, admin=ADMIN_DN, adminpw=ADMIN_PW,
                                  cert=self.cert, key=self.key))
        subprocess.run([SLAPADD, "-n0", "-F", os.path.join(self.dir, "slapd.d"), "-l", cfg],
                       check=True, capture_output=True)
        data = os.path.join(self.dir, "data.ldif")
        with open(data, "w") as f:
            f.write(base_ldif() + data_ldif)
        r = subprocess.run([SLAPADD, "-n1", "-F", os.path.join(self.dir, "slapd.d"), "-l", data],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("slapadd: " + r.stderr)

    @property
    def uri(self):
        return "ldap://127.0.0.1:%d" % self.port

    @property
    def tls_uri(self):
        return "ldaps://127.0.0.1:%d" % self.tls_port

    @property
    def ldapi_uri(self):
        return "ldapi://" + urllib.parse.quote(os.path.join(self.dir, "ldapi"), safe="")

    def start(self):
        self.log = open(self.log_path, "a")
        # -d 256: stats (one line per operation) on stderr, in the foreground.
        urls = "ldap://127.0.0.1:%d/ %s/ %s" % (self.port, self.tls_uri, self.ldapi_uri)
        self.proc = subprocess.Popen([SLAPD, "-h", urls,
                                      "-F", os.path.join(self.dir, "slapd.d"), "-d", "256"],
                                     stdout=self.log, stderr=self.log)
        wait_for(lambda: port_open(self.port) and port_open(self.tls_port)
                 and os.path.exists(os.path.join(self.dir, "ldapi")), timeout=20, what="slapd listening")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def searches(self, needle=""):
        """Searches slapd logged so far whose filter contains needle."""
        with open(self.log_path, errors="replace") as f:
            return sum(1 for line in f if " SRCH " in line and "filter=" in line and needle in line)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
