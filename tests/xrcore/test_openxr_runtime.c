/*
 * A minimal headless OpenXR 1.0 runtime for medverse's tests (Monado's idea of a simulated device:
 * poses are fixed functions of the frame, the display is a GL texture nobody looks at).
 *
 * The real Khronos loader (the one in pyopenxr's wheel) loads it through XR_RUNTIME_JSON, so the
 * OpenXR backend runs unchanged: instance, system, EGL graphics binding (XR_MNDX_egl_enable), session
 * lifecycle, swapchains backed by real GL texture arrays made with the application's context, the
 * frame loop, actions with a Touch controller, haptics, and (on request) bare-hand tracking through
 * XR_EXT_hand_tracking and a chosen list of environment blend modes. The runtime checks what it is
 * given and writes one line per noteworthy call to $MEDVERSE_XR_TEST_LOG, which the tests read: each
 * xrEndFrame's line names the environment blend mode and each projection layer's flags submitted.
 * Without XR_MNDX_egl_enable (no_egl=1) it takes the Xlib/GLX binding (XrGraphicsBindingOpenGLXlibKHR)
 * instead, as SteamVR does, and resolves GL through libGLX's glXGetProcAddressARB; the application's GLX
 * context must be current in xrCreateSession.
 *
 * $MEDVERSE_XR_TEST holds comma-separated options:
 *   stop_after=N       after N focused frames the runtime ends the session itself (the user took
 *                      the headset off for good): VISIBLE, SYNCHRONIZED, STOPPING, then EXITING;
 *   lose_after=N       after N frames the session is lost (LOSS_PENDING, then XR_ERROR_SESSION_LOST)
 *                      once; xrGetSystem then fails M=unavailable_polls times before the system is back;
 *   silent_loss=1      lose the session without the LOSS_PENDING event (calls fail with
 *                      XR_ERROR_SESSION_LOST only);
 *   lose_instance_after=N  after N frames the instance is lost (INSTANCE_LOSS_PENDING, then
 *                      XR_ERROR_INSTANCE_LOST) once; a new instance works;
 *   no_egl=1           do not offer XR_MNDX_egl_enable; xrCreateSession then wants the Xlib binding;
 *   hands=1            offer XR_EXT_hand_tracking, with a system that tracks hands (hands=2: the extension
 *                      is offered but XrSystemHandTrackingPropertiesEXT says the system cannot); the
 *                      hands' skeleton is a pure function of the time asked for (see hand_joint);
 *   controllers=0      no controller is held: pose actions are inactive, no interaction profile;
 *   blend=a/b/...      the environment blend modes offered, in the runtime's order of preference, by
 *                      name (opaque, additive, alpha); default opaque. xrEndFrame refuses any other.
 *
 * Build: cc -shared -fPIC -o libmedverse_xr_test.so test_openxr_runtime.c  (needs libopenxr-dev headers)
 */
#define XR_USE_GRAPHICS_API_OPENGL
#define XR_USE_PLATFORM_EGL
#define XR_USE_PLATFORM_XLIB
#include <EGL/egl.h>
#include <X11/Xlib.h>
#include <GL/glx.h>
#include <dlfcn.h>
#include <math.h>
#include <openxr/openxr.h>
#include <openxr/openxr_platform.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- loader negotiation (loader_interfaces.h of the OpenXR SDK, not shipped in the -dev package) */
typedef enum { LOADER_INFO = 1, RUNTIME_REQUEST = 3 } LoaderStructs;
typedef struct {
    LoaderStructs structType; uint32_t structVersion; size_t structSize;
    uint32_t minInterfaceVersion, maxInterfaceVersion; XrVersion minApiVersion, maxApiVersion;
} NegotiateLoaderInfo;
typedef struct {
    LoaderStructs structType; uint32_t structVersion; size_t structSize;
    uint32_t runtimeInterfaceVersion; XrVersion runtimeApiVersion; PFN_xrGetInstanceProcAddr getInstanceProcAddr;
} NegotiateRuntimeRequest;

/* ---- GL entry points, resolved through the application's eglGetProcAddress (or libGLX's) --------- */
typedef unsigned int GLenum; typedef unsigned int GLuint; typedef int GLint; typedef int GLsizei;
typedef void (*GenTextures)(GLsizei, GLuint *);
typedef void (*BindTexture)(GLenum, GLuint);
typedef void (*TexStorage3D)(GLenum, GLsizei, GLenum, GLsizei, GLsizei, GLsizei);
typedef void (*GetTextureSubImage)(GLuint, GLint, GLint, GLint, GLint, GLsizei, GLsizei, GLsizei, GLenum, GLenum, GLsizei, void *);
typedef void (*DeleteTextures)(GLsizei, const GLuint *);
#define GL_TEXTURE_2D_ARRAY 0x8C1A
#define GL_RGBA 0x1908
#define GL_UNSIGNED_BYTE 0x1401
#define GL_SRGB8_ALPHA8 0x8C43
#define GL_RGBA8 0x8058
#define GL_DEPTH_COMPONENT32F 0x8CAC
#define GL_DEPTH24_STENCIL8 0x88F0

/* ---- state ---------------------------------------------------------------------------------------- */
#define PERIOD_NS 11111111LL /* 90 Hz */
#define MAX_PATHS 256
#define MAX_ACTIONS 32
#define MAX_SPACES 32
#define MAX_EVENTS 64
#define IMAGES 3

static FILE *log_file;
static int opt_stop_after = -1, opt_lose_after = -1, opt_unavailable_polls = 0, opt_no_egl = 0, opt_silent_loss = 0;
static int opt_lose_instance_after = -1, instance_lost, instance_loss_done;
static int opt_hands = 0, opt_controllers = 1, hands_enabled;
static const char *BLEND_NAMES[] = {"?", "opaque", "additive", "alpha"}; /* by XrEnvironmentBlendMode value */
static XrEnvironmentBlendMode blend_modes[3] = {XR_ENVIRONMENT_BLEND_MODE_OPAQUE};
static uint32_t blend_count = 1;

static char *paths[MAX_PATHS];
static int path_count;

typedef struct { char name[64]; } Action;
static Action actions[MAX_ACTIONS];
static int action_count;

/* kind 0 reference(view) 1 reference(other) 2 action; reference: the XrReferenceSpaceType, 0 for an action space */
typedef struct { int kind; int action; XrPath hand; int reference; } Space;
static Space spaces[MAX_SPACES];
static int space_count;

typedef struct { XrStructureType type; XrSessionState state; XrSession session; } Event;
static Event events[MAX_EVENTS];
static int event_head, event_tail;

typedef struct { GLuint textures[IMAGES]; int64_t format; uint32_t width, height, layers; int next, acquired, released; int used; } Swapchain;
static Swapchain swapchains[8];

static int instance_alive, session_alive, session_lost, loss_done, polls_failed;
static XrSessionState state = XR_SESSION_STATE_UNKNOWN;
static int running, stopping, exit_requested, focused_frames, frames, in_frame, profile_sent;
static XrTime last_predicted;
static PFNEGLGETPROCADDRESSPROC gl_proc;

static void note(const char *fmt, ...) {
    if (!log_file) return;
    va_list ap; va_start(ap, fmt); vfprintf(log_file, fmt, ap); va_end(ap);
    fputc('\n', log_file); fflush(log_file);
}

static void read_blend_modes(char *names) {
    /* "alpha/opaque": the modes offered, most preferred first; unknown names are skipped. */
    blend_count = 0;
    char *rest = NULL;
    for (char *name = strtok_r(names, "/", &rest); name && blend_count < 3; name = strtok_r(NULL, "/", &rest))
        for (int m = 1; m <= 3; m++)
            if (!strcmp(name, BLEND_NAMES[m])) blend_modes[blend_count++] = (XrEnvironmentBlendMode)m;
}

static void read_options(void) {
    const char *spec = getenv("MEDVERSE_XR_TEST");
    const char *log_path = getenv("MEDVERSE_XR_TEST_LOG");
    if (log_path && !log_file) log_file = fopen(log_path, "a");
    /* The loader unloads the runtime with the last instance: what must outlive that is in the environment. */
    if (getenv("MEDVERSE_XR_TEST_INSTANCE_LOST")) instance_loss_done = 1;
    if (!spec) return;
    char buffer[256]; strncpy(buffer, spec, sizeof buffer - 1); buffer[sizeof buffer - 1] = 0;
    char *rest = NULL;
    for (char *item = strtok_r(buffer, ",", &rest); item; item = strtok_r(NULL, ",", &rest)) {
        char key[64], text[128];
        if (sscanf(item, "%63[^=]=%127s", key, text) != 2) continue;
        int value = atoi(text);
        if (!strcmp(key, "stop_after")) opt_stop_after = value;
        else if (!strcmp(key, "lose_after")) opt_lose_after = value;
        else if (!strcmp(key, "unavailable_polls")) opt_unavailable_polls = value;
        else if (!strcmp(key, "no_egl")) opt_no_egl = value;
        else if (!strcmp(key, "silent_loss")) opt_silent_loss = value;
        else if (!strcmp(key, "lose_instance_after")) opt_lose_instance_after = value;
        else if (!strcmp(key, "hands")) opt_hands = value;
        else if (!strcmp(key, "controllers")) opt_controllers = value;
        else if (!strcmp(key, "blend")) read_blend_modes(text);
    }
}

static XrSession the_session(void);

static void push_state(XrSessionState s) {
    events[event_tail % MAX_EVENTS] = (Event){XR_TYPE_EVENT_DATA_SESSION_STATE_CHANGED, s, the_session()};
    event_tail++;
    state = s;
    note("state %d", (int)s);
}

static XrInstance the_instance(void) { return (XrInstance)(uintptr_t)(0x1001 + instance_loss_done); }
static XrSession the_session(void) { return (XrSession)(uintptr_t)(0x2000 + loss_done); }
static const XrSystemId SYSTEM = 7;

static XrResult enumerate(uint32_t capacity, uint32_t *count, uint32_t n) {
    *count = n;
    if (capacity == 0) return XR_SUCCESS;
    return capacity < n ? XR_ERROR_SIZE_INSUFFICIENT : XR_SUCCESS;
}

/* ---- instance -------------------------------------------------------------------------------------- */
static uint32_t offered_extensions(const char *names[4]) {
    uint32_t n = 0;
    names[n++] = XR_KHR_OPENGL_ENABLE_EXTENSION_NAME;
    names[n++] = XR_KHR_COMPOSITION_LAYER_DEPTH_EXTENSION_NAME;
    if (!opt_no_egl) names[n++] = XR_MNDX_EGL_ENABLE_EXTENSION_NAME;
    if (opt_hands) names[n++] = XR_EXT_HAND_TRACKING_EXTENSION_NAME;
    return n;
}

static XrResult XRAPI_CALL EnumerateInstanceExtensionProperties(const char *layer, uint32_t cap, uint32_t *count, XrExtensionProperties *props) {
    (void)layer;
    read_options();
    const char *names[4];
    uint32_t n = offered_extensions(names);
    XrResult r = enumerate(cap, count, n);
    if (cap == 0 || r != XR_SUCCESS) return r;
    for (uint32_t i = 0; i < n; i++) { strcpy(props[i].extensionName, names[i]); props[i].extensionVersion = 1; }
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL CreateInstance(const XrInstanceCreateInfo *info, XrInstance *instance) {
    read_options();
    const char *names[4];
    uint32_t n = offered_extensions(names);
    hands_enabled = 0;
    for (uint32_t i = 0; i < info->enabledExtensionCount; i++) {
        const char *e = info->enabledExtensionNames[i];
        int known = 0;
        for (uint32_t k = 0; k < n; k++) known |= !strcmp(e, names[k]);
        if (!known) return XR_ERROR_EXTENSION_NOT_PRESENT;
        hands_enabled |= !strcmp(e, XR_EXT_HAND_TRACKING_EXTENSION_NAME);
        note("extension %s", e);
    }
    instance_alive = 1; instance_lost = 0;
    path_count = 0; action_count = 0; space_count = 0; /* a new instance starts with no paths or actions */
    *instance = the_instance();
    note("create_instance app=%s api=%llu", info->applicationInfo.applicationName,
         (unsigned long long)XR_VERSION_MAJOR(info->applicationInfo.apiVersion));
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL DestroyInstance(XrInstance instance) {
    (void)instance; instance_alive = 0; note("destroy_instance");
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL GetInstanceProperties(XrInstance instance, XrInstanceProperties *p) {
    (void)instance; p->runtimeVersion = XR_MAKE_VERSION(0, 1, 0);
    strcpy(p->runtimeName, "medverse headless test runtime");
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL PollEvent(XrInstance instance, XrEventDataBuffer *buffer) {
    (void)instance;
    if (instance_lost == 1) {
        instance_lost = 2; /* reported once; every call fails from now on */
        XrEventDataInstanceLossPending *e = (XrEventDataInstanceLossPending *)buffer;
        e->type = XR_TYPE_EVENT_DATA_INSTANCE_LOSS_PENDING; e->next = NULL; e->lossTime = last_predicted;
        return XR_SUCCESS;
    }
    if (instance_lost) return XR_ERROR_INSTANCE_LOST;
    if (session_alive && !profile_sent && running) {
        profile_sent = 1;
        XrEventDataInteractionProfileChanged *e = (XrEventDataInteractionProfileChanged *)buffer;
        e->type = XR_TYPE_EVENT_DATA_INTERACTION_PROFILE_CHANGED; e->next = NULL; e->session = the_session();
        return XR_SUCCESS;
    }
    if (event_head == event_tail) return XR_EVENT_UNAVAILABLE;
    Event ev = events[event_head % MAX_EVENTS]; event_head++;
    XrEventDataSessionStateChanged *e = (XrEventDataSessionStateChanged *)buffer;
    e->type = ev.type; e->next = NULL; e->session = ev.session; e->state = ev.state; e->time = last_predicted;
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL ResultToString(XrInstance i, XrResult r, char buffer[XR_MAX_RESULT_STRING_SIZE]) {
    (void)i; snprintf(buffer, XR_MAX_RESULT_STRING_SIZE, "XR_RESULT_%d", (int)r); return XR_SUCCESS;
}

static XrResult XRAPI_CALL StructureTypeToString(XrInstance i, XrStructureType t, char buffer[XR_MAX_STRUCTURE_NAME_SIZE]) {
    (void)i; snprintf(buffer, XR_MAX_STRUCTURE_NAME_SIZE, "XR_TYPE_%d", (int)t); return XR_SUCCESS;
}

/* ---- system ---------------------------------------------------------------------------------------- */
static XrResult XRAPI_CALL GetSystem(XrInstance instance, const XrSystemGetInfo *info, XrSystemId *system) {
    (void)instance;
    if (info->formFactor != XR_FORM_FACTOR_HEAD_MOUNTED_DISPLAY) return XR_ERROR_FORM_FACTOR_UNSUPPORTED;
    if (loss_done && polls_failed < opt_unavailable_polls) {
        polls_failed++; note("get_system unavailable"); return XR_ERROR_FORM_FACTOR_UNAVAILABLE;
    }
    *system = SYSTEM;
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL GetSystemProperties(XrInstance i, XrSystemId s, XrSystemProperties *p) {
    (void)i; (void)s; p->systemId = SYSTEM; p->vendorId = 0; strcpy(p->systemName, "headless");
    p->graphicsProperties.maxSwapchainImageWidth = 4096; p->graphicsProperties.maxSwapchainImageHeight = 4096;
    p->graphicsProperties.maxLayerCount = 16;
    p->trackingProperties.orientationTracking = XR_TRUE; p->trackingProperties.positionTracking = XR_TRUE;
    for (XrBaseOutStructure *next = (XrBaseOutStructure *)p->next; next; next = next->next) {
        if (next->type != XR_TYPE_SYSTEM_HAND_TRACKING_PROPERTIES_EXT) continue;
        if (!hands_enabled) return XR_ERROR_VALIDATION_FAILURE; /* chained without enabling the extension */
        ((XrSystemHandTrackingPropertiesEXT *)next)->supportsHandTracking = opt_hands == 1 ? XR_TRUE : XR_FALSE;
        note("system_properties hand_tracking=%d", opt_hands == 1);
    }
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL EnumerateViewConfigurations(XrInstance i, XrSystemId s, uint32_t cap, uint32_t *count, XrViewConfigurationType *types) {
    (void)i; (void)s;
    XrResult r = enumerate(cap, count, 1);
    if (cap && r == XR_SUCCESS) types[0] = XR_VIEW_CONFIGURATION_TYPE_PRIMARY_STEREO;
    return r;
}

static XrResult XRAPI_CALL EnumerateViewConfigurationViews(XrInstance i, XrSystemId s, XrViewConfigurationType t, uint32_t cap, uint32_t *count, XrViewConfigurationView *views) {
    (void)i; (void)s;
    if (t != XR_VIEW_CONFIGURATION_TYPE_PRIMARY_STEREO) return XR_ERROR_VIEW_CONFIGURATION_TYPE_UNSUPPORTED;
    XrResult r = enumerate(cap, count, 2);
    if (cap == 0 || r != XR_SUCCESS) return r;
    for (int k = 0; k < 2; k++) {
        views[k].recommendedImageRectWidth = 64; views[k].maxImageRectWidth = 1024;
        views[k].recommendedImageRectHeight = 48; views[k].maxImageRectHeight = 1024;
        views[k].recommendedSwapchainSampleCount = 1; views[k].maxSwapchainSampleCount = 4;
    }
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL EnumerateEnvironmentBlendModes(XrInstance i, XrSystemId s, XrViewConfigurationType t, uint32_t cap, uint32_t *count, XrEnvironmentBlendMode *modes) {
    (void)i; (void)s;
    if (t != XR_VIEW_CONFIGURATION_TYPE_PRIMARY_STEREO) return XR_ERROR_VIEW_CONFIGURATION_TYPE_UNSUPPORTED;
    XrResult r = enumerate(cap, count, blend_count);
    if (cap && r == XR_SUCCESS) memcpy(modes, blend_modes, blend_count * sizeof *modes);
    return r;
}

static XrResult XRAPI_CALL GetOpenGLGraphicsRequirementsKHR(XrInstance i, XrSystemId s, XrGraphicsRequirementsOpenGLKHR *req) {
    (void)i; (void)s;
    req->minApiVersionSupported = XR_MAKE_VERSION(3, 3, 0); req->maxApiVersionSupported = XR_MAKE_VERSION(4, 6, 0);
    return XR_SUCCESS;
}

/* ---- paths and actions ----------------------------------------------------------------------------- */
static XrResult XRAPI_CALL StringToPath(XrInstance i, const char *s, XrPath *path) {
    (void)i;
    for (int k = 0; k < path_count; k++) if (!strcmp(paths[k], s)) { *path = (XrPath)(k + 1); return XR_SUCCESS; }
    if (path_count == MAX_PATHS) return XR_ERROR_PATH_COUNT_EXCEEDED;
    paths[path_count] = strdup(s);
    *path = (XrPath)(++path_count);
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL PathToString(XrInstance i, XrPath path, uint32_t cap, uint32_t *count, char *buffer) {
    (void)i;
    if (path == 0 || path > (XrPath)path_count) return XR_ERROR_PATH_INVALID;
    const char *s = paths[path - 1];
    XrResult r = enumerate(cap, count, (uint32_t)strlen(s) + 1);
    if (cap && r == XR_SUCCESS) strcpy(buffer, s);
    return r;
}

static const char *path_name(XrPath p) { return (p && p <= (XrPath)path_count) ? paths[p - 1] : ""; }
static int is_right(XrPath p) { return strstr(path_name(p), "/user/hand/right") != NULL; }

static XrResult XRAPI_CALL CreateActionSet(XrInstance i, const XrActionSetCreateInfo *info, XrActionSet *set) {
    (void)i; note("create_action_set %s", info->actionSetName); *set = (XrActionSet)(uintptr_t)0x3001;
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL DestroyActionSet(XrActionSet set) { (void)set; note("destroy_action_set"); return XR_SUCCESS; }

static XrResult XRAPI_CALL CreateAction(XrActionSet set, const XrActionCreateInfo *info, XrAction *action) {
    (void)set;
    if (action_count == MAX_ACTIONS) return XR_ERROR_LIMIT_REACHED;
    if (info->countSubactionPaths != 2) return XR_ERROR_VALIDATION_FAILURE;
    strncpy(actions[action_count].name, info->actionName, 63);
    *action = (XrAction)(uintptr_t)(0x4000 + action_count++);
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL DestroyAction(XrAction a) { (void)a; return XR_SUCCESS; }

static const char *action_name(XrAction a) {
    uintptr_t k = (uintptr_t)a - 0x4000;
    return k < (uintptr_t)action_count ? actions[k].name : "";
}

static XrResult XRAPI_CALL SuggestInteractionProfileBindings(XrInstance i, const XrInteractionProfileSuggestedBinding *s) {
    (void)i;
    const char *profile = path_name(s->interactionProfile);
    if (strncmp(profile, "/interaction_profiles/", 22)) return XR_ERROR_PATH_UNSUPPORTED;
    for (uint32_t k = 0; k < s->countSuggestedBindings; k++)
        if (strncmp(path_name(s->suggestedBindings[k].binding), "/user/hand/", 11)) return XR_ERROR_PATH_UNSUPPORTED;
    note("bindings %s %u", profile, s->countSuggestedBindings);
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL AttachSessionActionSets(XrSession s, const XrSessionActionSetsAttachInfo *info) {
    (void)s; note("attach %u", info->countActionSets); return XR_SUCCESS;
}

static XrResult XRAPI_CALL GetCurrentInteractionProfile(XrSession s, XrPath user, XrInteractionProfileState *st) {
    (void)s; (void)user;
    if (!opt_controllers) { st->interactionProfile = XR_NULL_PATH; return XR_SUCCESS; }
    StringToPath(the_instance(), "/interaction_profiles/oculus/touch_controller", &st->interactionProfile);
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL SyncActions(XrSession s, const XrActionsSyncInfo *info) {
    (void)s; (void)info;
    if (session_lost) return XR_ERROR_SESSION_LOST;
    return state == XR_SESSION_STATE_FOCUSED ? XR_SUCCESS : XR_SESSION_NOT_FOCUSED;
}

static XrResult XRAPI_CALL GetActionStateBoolean(XrSession s, const XrActionStateGetInfo *g, XrActionStateBoolean *st) {
    (void)s; const char *n = action_name(g->action);
    st->isActive = opt_controllers ? XR_TRUE : XR_FALSE; st->changedSinceLastSync = XR_FALSE; st->lastChangeTime = 0;
    st->currentState = (opt_controllers && is_right(g->subactionPath) && !strcmp(n, "primary")) ? XR_TRUE : XR_FALSE;
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL GetActionStateFloat(XrSession s, const XrActionStateGetInfo *g, XrActionStateFloat *st) {
    (void)s; const char *n = action_name(g->action);
    st->isActive = opt_controllers ? XR_TRUE : XR_FALSE; st->changedSinceLastSync = XR_FALSE; st->lastChangeTime = 0;
    st->currentState = !opt_controllers ? 0.0f : !strcmp(n, "trigger") ? (is_right(g->subactionPath) ? 0.75f : 0.0f)
                     : !strcmp(n, "squeeze") ? 0.25f : 0.0f;
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL GetActionStateVector2f(XrSession s, const XrActionStateGetInfo *g, XrActionStateVector2f *st) {
    (void)s;
    int right = opt_controllers && is_right(g->subactionPath);
    st->isActive = opt_controllers ? XR_TRUE : XR_FALSE; st->changedSinceLastSync = XR_FALSE; st->lastChangeTime = 0;
    st->currentState.x = right ? 0.5f : 0.0f;
    st->currentState.y = right ? -0.25f : 0.0f;
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL GetActionStatePose(XrSession s, const XrActionStateGetInfo *g, XrActionStatePose *st) {
    (void)s; (void)g; st->isActive = opt_controllers ? XR_TRUE : XR_FALSE; return XR_SUCCESS;
}

static XrResult XRAPI_CALL ApplyHapticFeedback(XrSession s, const XrHapticActionInfo *info, const XrHapticBaseHeader *h) {
    (void)s;
    if (h->type != XR_TYPE_HAPTIC_VIBRATION) return XR_ERROR_VALIDATION_FAILURE;
    const XrHapticVibration *v = (const XrHapticVibration *)h;
    note("haptic action=%s hand=%s amplitude=%.2f duration=%lld frequency=%.1f", action_name(info->action),
         is_right(info->subactionPath) ? "right" : "left", v->amplitude, (long long)v->duration, v->frequency);
    return XR_SUCCESS;
}

/* ---- session and spaces ---------------------------------------------------------------------------- */
static XrResult xlib_binding(const XrGraphicsBindingOpenGLXlibKHR *b, const char **current) {
    /* The Xlib/GLX binding (what SteamVR takes): every handle given, and the context current. */
    if (!b->xDisplay || !b->visualid || !b->glxFBConfig || !b->glxDrawable || !b->glxContext) {
        note("create_session refused: xlib binding with a null field");
        return XR_ERROR_GRAPHICS_DEVICE_INVALID;
    }
    void *glx = dlopen("libGLX.so.0", RTLD_LAZY);
    if (!glx) return XR_ERROR_GRAPHICS_DEVICE_INVALID;
    GLXContext (*get_current)(void) = (GLXContext (*)(void))dlsym(glx, "glXGetCurrentContext");
    void *get_proc = dlsym(glx, "glXGetProcAddressARB");
    if (!get_current || !get_proc) return XR_ERROR_GRAPHICS_DEVICE_INVALID;
    if (get_current() != b->glxContext) {
        note("create_session refused: the glx context is not current");
        return XR_ERROR_GRAPHICS_DEVICE_INVALID;
    }
    *current = "current";
    gl_proc = (PFNEGLGETPROCADDRESSPROC)get_proc;
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL CreateSession(XrInstance i, const XrSessionCreateInfo *info, XrSession *session) {
    (void)i;
    const XrBaseInStructure *next = (const XrBaseInStructure *)info->next;
    const char *binding = "egl", *current = "-";
    if (next && next->type == XR_TYPE_GRAPHICS_BINDING_OPENGL_XLIB_KHR && opt_no_egl) {
        XrResult r = xlib_binding((const XrGraphicsBindingOpenGLXlibKHR *)next, &current);
        if (r != XR_SUCCESS) return r;
        binding = "xlib";
    } else {
        const XrGraphicsBindingEGLMNDX *b = (const XrGraphicsBindingEGLMNDX *)next;
        /* Without XR_MNDX_egl_enable the EGL binding is not valid either. */
        if (!b || b->type != XR_TYPE_GRAPHICS_BINDING_EGL_MNDX || opt_no_egl) {
            note("create_session refused: binding type %d", b ? (int)b->type : 0);
            return XR_ERROR_GRAPHICS_DEVICE_INVALID;
        }
        if (!b->getProcAddress || !b->display || !b->config || !b->context) return XR_ERROR_GRAPHICS_DEVICE_INVALID;
        gl_proc = b->getProcAddress;
    }
    int gl_ok = gl_proc("glGenTextures") != NULL && gl_proc("glGetTextureSubImage") != NULL;
    session_alive = 1; session_lost = 0; running = stopping = exit_requested = focused_frames = frames = 0; profile_sent = 0;
    event_head = event_tail = 0;
    *session = the_session();
    note("create_session binding=%s gl=%s context=%s", binding, gl_ok ? "ok" : "missing", current);
    push_state(XR_SESSION_STATE_IDLE);
    push_state(XR_SESSION_STATE_READY);
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL DestroySession(XrSession s) {
    (void)s; session_alive = 0; running = 0; state = XR_SESSION_STATE_UNKNOWN; note("destroy_session");
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL BeginSession(XrSession s, const XrSessionBeginInfo *info) {
    (void)s;
    if (session_lost) return XR_ERROR_SESSION_LOST;
    if (running) return XR_ERROR_SESSION_RUNNING;
    if (state != XR_SESSION_STATE_READY) return XR_ERROR_SESSION_NOT_READY;
    if (info->primaryViewConfigurationType != XR_VIEW_CONFIGURATION_TYPE_PRIMARY_STEREO) return XR_ERROR_VIEW_CONFIGURATION_TYPE_UNSUPPORTED;
    running = 1; note("begin_session");
    push_state(XR_SESSION_STATE_SYNCHRONIZED);
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL EndSession(XrSession s) {
    (void)s;
    if (session_lost) return XR_ERROR_SESSION_LOST;
    if (!running) return XR_ERROR_SESSION_NOT_RUNNING;
    if (state != XR_SESSION_STATE_STOPPING) return XR_ERROR_SESSION_NOT_STOPPING;
    running = 0; note("end_session");
    push_state(XR_SESSION_STATE_IDLE);
    push_state(XR_SESSION_STATE_EXITING); /* the test runtime never restarts a stopped session */
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL RequestExitSession(XrSession s) {
    (void)s;
    if (!running) return XR_ERROR_SESSION_NOT_RUNNING;
    exit_requested = stopping = 1; note("request_exit");
    return XR_SUCCESS;
}

static XrResult new_space(int kind, int action, XrPath hand, int reference, XrSpace *space) {
    if (space_count == MAX_SPACES) return XR_ERROR_LIMIT_REACHED;
    spaces[space_count] = (Space){kind, action, hand, reference};
    *space = (XrSpace)(uintptr_t)(0x5000 + space_count++);
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL EnumerateReferenceSpaces(XrSession s, uint32_t cap, uint32_t *count, XrReferenceSpaceType *types) {
    (void)s;
    XrResult r = enumerate(cap, count, 3);
    if (cap && r == XR_SUCCESS) { types[0] = XR_REFERENCE_SPACE_TYPE_VIEW; types[1] = XR_REFERENCE_SPACE_TYPE_LOCAL; types[2] = XR_REFERENCE_SPACE_TYPE_STAGE; }
    return r;
}

static XrResult XRAPI_CALL CreateReferenceSpace(XrSession s, const XrReferenceSpaceCreateInfo *info, XrSpace *space) {
    (void)s; note("reference_space %d", (int)info->referenceSpaceType);
    return new_space(info->referenceSpaceType == XR_REFERENCE_SPACE_TYPE_VIEW ? 0 : 1, -1, XR_NULL_PATH,
                     (int)info->referenceSpaceType, space);
}

static XrResult XRAPI_CALL CreateActionSpace(XrSession s, const XrActionSpaceCreateInfo *info, XrSpace *space) {
    (void)s; return new_space(2, (int)((uintptr_t)info->action - 0x4000), info->subactionPath, 0, space);
}

static XrResult XRAPI_CALL DestroySpace(XrSpace space) { (void)space; return XR_SUCCESS; }

static XrResult XRAPI_CALL LocateSpace(XrSpace space, XrSpace base, XrTime time, XrSpaceLocation *loc) {
    (void)base; (void)time;
    Space *sp = &spaces[(uintptr_t)space - 0x5000];
    XrPosef p = {{0, 0, 0, 1}, {0, 1.6f, 0}};
    if (sp->kind == 2) {
        int right = is_right(sp->hand);
        p.position.x = right ? 0.2f : -0.2f; p.position.y = 1.3f;
        p.position.z = !strcmp(actions[sp->action].name, "aim_pose") ? -0.35f : -0.3f;
    }
    loc->pose = p;
    loc->locationFlags = (sp->kind == 2 && !opt_controllers) ? 0 : /* no controller, nothing to locate */
                         XR_SPACE_LOCATION_POSITION_VALID_BIT | XR_SPACE_LOCATION_ORIENTATION_VALID_BIT |
                         XR_SPACE_LOCATION_POSITION_TRACKED_BIT | XR_SPACE_LOCATION_ORIENTATION_TRACKED_BIT;
    return session_lost ? XR_ERROR_SESSION_LOST : XR_SUCCESS;
}

/* ---- hand tracking (XR_EXT_hand_tracking) ---------------------------------------------------------- */
/* The right hand, open, relative to its wrist (metres): palm down, fingers forward (-Z), thumb to the
 * left (-X). The left hand is its mirror image (x negated). Every joint's orientation is identity, which
 * in the extension's convention (+Z along the bone from the tip towards the wrist, +Y out of the back
 * of the hand) is such a flat hand. The thumb and index tips are placed by the pinch (hand_joint). */
static const double OPEN_HAND[XR_HAND_JOINT_COUNT_EXT][3] = {
    {0, 0, -0.05}, {0, 0, 0},                                                                /* palm, wrist */
    {-0.025, -0.01, -0.02}, {-0.045, -0.015, -0.045}, {-0.055, -0.015, -0.07}, {0, 0, 0},     /* thumb */
    {-0.02, 0, -0.01}, {-0.025, 0, -0.09}, {-0.027, 0, -0.13}, {-0.028, 0, -0.155}, {0, 0, 0}, /* index */
    {0, 0, -0.01}, {0, 0, -0.09}, {0, 0, -0.135}, {0, 0, -0.163}, {0, 0, -0.185},            /* middle */
    {0.018, 0, -0.01}, {0.02, 0, -0.085}, {0.021, 0, -0.125}, {0.022, 0, -0.15}, {0.022, 0, -0.17},
    {0.033, 0, -0.012}, {0.038, 0, -0.075}, {0.04, 0, -0.105}, {0.041, 0, -0.123}, {0.042, 0, -0.14},
};
static const double WRIST[3] = {0.2, 1.3, -0.25};              /* the right wrist in the reference space */
static const double PINCH_MEET[3] = {-0.045, -0.02, -0.13};    /* where the thumb and index tips meet */
static const double PINCH_LINE[3] = {0.3, 0.25, -0.92};        /* from the thumb tip towards the index tip */
#define PINCH_OPEN_M 0.08   /* thumb tip to index tip with the hand open */
#define PINCH_FRAMES 8.0    /* one pinch per 8 frames: open at frame 0, tips meet at 4, open again at 8 */

static void hand_joint(int right, XrTime time, XrHandJointLocationsEXT *out) {
    /* The skeleton at `time`, a pure function of it. With f the frame (time - 1 s) / period, the
     * thumb-to-index tip gap is PINCH_OPEN_M * (1 + cos(2 pi f / PINCH_FRAMES)) / 2. The right hand is
     * always tracked; the left hand is lost (isActive false) at frames f = 0 mod 4 and its little
     * finger tip is occluded (no valid flags) at frames f = 2 mod 4. */
    double frame = (double)(time - 1000000000LL) / (double)PERIOD_NS;
    long n = lround(frame);
    int active = right || n % 4 != 0;
    double gap = PINCH_OPEN_M * (1.0 + cos(2.0 * 3.14159265358979323846 * frame / PINCH_FRAMES)) / 2.0;
    double length = sqrt(PINCH_LINE[0] * PINCH_LINE[0] + PINCH_LINE[1] * PINCH_LINE[1] + PINCH_LINE[2] * PINCH_LINE[2]);
    double mirror = right ? 1.0 : -1.0;
    const XrSpaceLocationFlags valid = XR_SPACE_LOCATION_POSITION_VALID_BIT | XR_SPACE_LOCATION_ORIENTATION_VALID_BIT |
                                       XR_SPACE_LOCATION_POSITION_TRACKED_BIT | XR_SPACE_LOCATION_ORIENTATION_TRACKED_BIT;
    out->isActive = active ? XR_TRUE : XR_FALSE;
    for (int j = 0; j < XR_HAND_JOINT_COUNT_EXT; j++) {
        double p[3] = {OPEN_HAND[j][0], OPEN_HAND[j][1], OPEN_HAND[j][2]};
        if (j == XR_HAND_JOINT_THUMB_TIP_EXT || j == XR_HAND_JOINT_INDEX_TIP_EXT) {
            double side = j == XR_HAND_JOINT_INDEX_TIP_EXT ? 0.5 : -0.5;
            for (int k = 0; k < 3; k++) p[k] = PINCH_MEET[k] + side * gap * PINCH_LINE[k] / length;
        }
        XrHandJointLocationEXT *loc = &out->jointLocations[j];
        loc->pose = (XrPosef){{0, 0, 0, 1}, {(float)(mirror * (WRIST[0] + p[0])), (float)(WRIST[1] + p[1]), (float)(WRIST[2] + p[2])}};
        loc->radius = j <= XR_HAND_JOINT_WRIST_EXT ? 0.02f : j % 5 == 0 ? 0.008f : 0.01f; /* tips: 5, 10, ... 25 */
        int occluded = !right && n % 4 == 2 && j == XR_HAND_JOINT_LITTLE_TIP_EXT;
        loc->locationFlags = (active && !occluded) ? valid : 0;
    }
}

static XrResult XRAPI_CALL CreateHandTrackerEXT(XrSession s, const XrHandTrackerCreateInfoEXT *info, XrHandTrackerEXT *tracker) {
    (void)s;
    if (!session_alive) return XR_ERROR_HANDLE_INVALID;
    if (session_lost) return XR_ERROR_SESSION_LOST;
    if (opt_hands != 1) return XR_ERROR_FEATURE_UNSUPPORTED; /* the system said it tracks no hands */
    if (info->type != XR_TYPE_HAND_TRACKER_CREATE_INFO_EXT || info->handJointSet != XR_HAND_JOINT_SET_DEFAULT_EXT ||
        (info->hand != XR_HAND_LEFT_EXT && info->hand != XR_HAND_RIGHT_EXT)) return XR_ERROR_VALIDATION_FAILURE;
    note("hand_tracker %s", info->hand == XR_HAND_RIGHT_EXT ? "right" : "left");
    *tracker = (XrHandTrackerEXT)(uintptr_t)(0x7000 + info->hand);
    return XR_SUCCESS;
}

static int tracker_is_right(XrHandTrackerEXT tracker) { return (uintptr_t)tracker - 0x7000 == XR_HAND_RIGHT_EXT; }

static XrResult XRAPI_CALL DestroyHandTrackerEXT(XrHandTrackerEXT tracker) {
    note("destroy_hand_tracker %s", tracker_is_right(tracker) ? "right" : "left");
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL LocateHandJointsEXT(XrHandTrackerEXT tracker, const XrHandJointsLocateInfoEXT *info, XrHandJointLocationsEXT *out) {
    if (session_lost) return XR_ERROR_SESSION_LOST;
    if (info->type != XR_TYPE_HAND_JOINTS_LOCATE_INFO_EXT || out->type != XR_TYPE_HAND_JOINT_LOCATIONS_EXT ||
        out->jointCount != XR_HAND_JOINT_COUNT_EXT || !out->jointLocations) return XR_ERROR_VALIDATION_FAILURE;
    uintptr_t base = (uintptr_t)info->baseSpace - 0x5000;
    if (base >= (uintptr_t)space_count) return XR_ERROR_HANDLE_INVALID;
    if (info->time <= 0) return XR_ERROR_TIME_INVALID;
    int right = tracker_is_right(tracker);
    note("hand_joints hand=%s time=%lld space=%d", right ? "right" : "left", (long long)info->time, spaces[base].reference);
    hand_joint(right, info->time, out);
    return XR_SUCCESS;
}

/* ---- swapchains ------------------------------------------------------------------------------------ */
static XrResult XRAPI_CALL EnumerateSwapchainFormats(XrSession s, uint32_t cap, uint32_t *count, int64_t *formats) {
    (void)s;
    XrResult r = enumerate(cap, count, 4);
    if (cap && r == XR_SUCCESS) {
        formats[0] = GL_RGBA8; formats[1] = GL_SRGB8_ALPHA8; formats[2] = GL_DEPTH_COMPONENT32F; formats[3] = GL_DEPTH24_STENCIL8;
    }
    return r;
}

static XrResult XRAPI_CALL CreateSwapchain(XrSession s, const XrSwapchainCreateInfo *info, XrSwapchain *out) {
    (void)s;
    int k = 0;
    while (k < 8 && swapchains[k].used) k++;
    if (k == 8) return XR_ERROR_LIMIT_REACHED;
    Swapchain *sc = &swapchains[k];
    memset(sc, 0, sizeof *sc);
    sc->used = 1; sc->format = info->format; sc->width = info->width; sc->height = info->height; sc->layers = info->arraySize;
    ((GenTextures)gl_proc("glGenTextures"))(IMAGES, sc->textures);
    for (int i = 0; i < IMAGES; i++) {
        ((BindTexture)gl_proc("glBindTexture"))(GL_TEXTURE_2D_ARRAY, sc->textures[i]);
        ((TexStorage3D)gl_proc("glTexStorage3D"))(GL_TEXTURE_2D_ARRAY, 1, (GLenum)info->format, (GLsizei)info->width, (GLsizei)info->height, (GLsizei)info->arraySize);
    }
    ((BindTexture)gl_proc("glBindTexture"))(GL_TEXTURE_2D_ARRAY, 0);
    note("swapchain format=0x%llx size=%ux%u layers=%u samples=%u", (long long)info->format, info->width, info->height, info->arraySize, info->sampleCount);
    *out = (XrSwapchain)(uintptr_t)(0x6000 + k);
    return XR_SUCCESS;
}

static Swapchain *swapchain_of(XrSwapchain h) { return &swapchains[(uintptr_t)h - 0x6000]; }

static XrResult XRAPI_CALL DestroySwapchain(XrSwapchain h) {
    Swapchain *sc = swapchain_of(h);
    if (gl_proc && session_alive) ((DeleteTextures)gl_proc("glDeleteTextures"))(IMAGES, sc->textures);
    sc->used = 0;
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL EnumerateSwapchainImages(XrSwapchain h, uint32_t cap, uint32_t *count, XrSwapchainImageBaseHeader *images) {
    XrResult r = enumerate(cap, count, IMAGES);
    if (cap == 0 || r != XR_SUCCESS) return r;
    XrSwapchainImageOpenGLKHR *gl = (XrSwapchainImageOpenGLKHR *)images;
    for (int i = 0; i < IMAGES; i++) {
        if (gl[i].type != XR_TYPE_SWAPCHAIN_IMAGE_OPENGL_KHR) return XR_ERROR_VALIDATION_FAILURE;
        gl[i].image = swapchain_of(h)->textures[i];
    }
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL AcquireSwapchainImage(XrSwapchain h, const XrSwapchainImageAcquireInfo *i, uint32_t *index) {
    (void)i; Swapchain *sc = swapchain_of(h);
    if (sc->acquired) return XR_ERROR_CALL_ORDER_INVALID;
    sc->acquired = 1; *index = (uint32_t)sc->next;
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL WaitSwapchainImage(XrSwapchain h, const XrSwapchainImageWaitInfo *i) {
    (void)i; return swapchain_of(h)->acquired ? XR_SUCCESS : XR_ERROR_CALL_ORDER_INVALID;
}

static XrResult XRAPI_CALL ReleaseSwapchainImage(XrSwapchain h, const XrSwapchainImageReleaseInfo *i) {
    (void)i; Swapchain *sc = swapchain_of(h);
    if (!sc->acquired) return XR_ERROR_CALL_ORDER_INVALID;
    sc->acquired = 0; sc->released = sc->next; sc->next = (sc->next + 1) % IMAGES;
    return XR_SUCCESS;
}

/* ---- frames ---------------------------------------------------------------------------------------- */
static XrResult XRAPI_CALL WaitFrame(XrSession s, const XrFrameWaitInfo *i, XrFrameState *fs) {
    (void)s; (void)i;
    if (instance_lost) return XR_ERROR_INSTANCE_LOST;
    if (session_lost) return XR_ERROR_SESSION_LOST;
    if (!running) return XR_ERROR_SESSION_NOT_RUNNING;
    last_predicted = 1000000000LL + (XrTime)(frames + 1) * PERIOD_NS;
    fs->predictedDisplayTime = last_predicted; fs->predictedDisplayPeriod = PERIOD_NS;
    fs->shouldRender = (state == XR_SESSION_STATE_VISIBLE || state == XR_SESSION_STATE_FOCUSED) ? XR_TRUE : XR_FALSE;
    return XR_SUCCESS;
}

static XrResult XRAPI_CALL BeginFrame(XrSession s, const XrFrameBeginInfo *i) {
    (void)s; (void)i;
    if (session_lost) return XR_ERROR_SESSION_LOST;
    in_frame = 1; return XR_SUCCESS;
}

static XrResult XRAPI_CALL LocateViews(XrSession s, const XrViewLocateInfo *info, XrViewState *vs, uint32_t cap, uint32_t *count, XrView *views) {
    (void)s; (void)info;
    if (session_lost) return XR_ERROR_SESSION_LOST;
    XrResult r = enumerate(cap, count, 2);
    if (cap == 0 || r != XR_SUCCESS) return r;
    vs->viewStateFlags = XR_VIEW_STATE_POSITION_VALID_BIT | XR_VIEW_STATE_ORIENTATION_VALID_BIT |
                         XR_VIEW_STATE_POSITION_TRACKED_BIT | XR_VIEW_STATE_ORIENTATION_TRACKED_BIT;
    for (int k = 0; k < 2; k++) {
        views[k].pose = (XrPosef){{0, 0, 0, 1}, {k ? 0.032f : -0.032f, 1.6f, 0}};
        views[k].fov = (XrFovf){k ? -0.8f : -0.9f, k ? 0.9f : 0.8f, 0.85f, -0.95f};
    }
    return XR_SUCCESS;
}

static unsigned pixel(const Swapchain *sc, int layer, int x, int y) {
    unsigned char px[4] = {0, 0, 0, 0};
    ((GetTextureSubImage)gl_proc("glGetTextureSubImage"))(sc->textures[sc->released], 0, x, y, layer, 1, 1, 1, GL_RGBA, GL_UNSIGNED_BYTE, 4, px);
    return (unsigned)px[0] << 24 | (unsigned)px[1] << 16 | (unsigned)px[2] << 8 | px[3];
}

static double covered(const Swapchain *sc, int layer) {
    /* Share of the layer's pixels that differ from its corner pixel (the background, when drawn). */
    static unsigned char px[1024 * 1024 * 4];
    if (sc->width * sc->height > 1024 * 1024) return -1.0;
    ((GetTextureSubImage)gl_proc("glGetTextureSubImage"))(sc->textures[sc->released], 0, 0, 0, layer, (GLsizei)sc->width,
        (GLsizei)sc->height, 1, GL_RGBA, GL_UNSIGNED_BYTE, (GLsizei)sizeof px, px);
    size_t n = (size_t)sc->width * sc->height, differ = 0;
    for (size_t i = 0; i < n; i++) differ += memcmp(px + 4 * i, px, 4) != 0;
    return (double)differ / (double)n;
}

static void advance_state(void) {
    /* Called after each frame: walk towards FOCUSED, or out towards STOPPING when stopping. */
    if (stopping) {
        if (state == XR_SESSION_STATE_FOCUSED) push_state(XR_SESSION_STATE_VISIBLE);
        else if (state == XR_SESSION_STATE_VISIBLE) push_state(XR_SESSION_STATE_SYNCHRONIZED);
        else if (state == XR_SESSION_STATE_SYNCHRONIZED) push_state(XR_SESSION_STATE_STOPPING);
        return;
    }
    if (state == XR_SESSION_STATE_SYNCHRONIZED) push_state(XR_SESSION_STATE_VISIBLE);
    else if (state == XR_SESSION_STATE_VISIBLE) push_state(XR_SESSION_STATE_FOCUSED);
}

static XrResult XRAPI_CALL EndFrame(XrSession s, const XrFrameEndInfo *info) {
    (void)s;
    if (session_lost) return XR_ERROR_SESSION_LOST;
    if (!in_frame) return XR_ERROR_CALL_ORDER_INVALID;
    in_frame = 0;
    if (info->displayTime != last_predicted) return XR_ERROR_TIME_INVALID;
    int offered = 0;
    for (uint32_t m = 0; m < blend_count; m++) offered |= info->environmentBlendMode == blend_modes[m];
    if (!offered) return XR_ERROR_ENVIRONMENT_BLEND_MODE_UNSUPPORTED;
    char detail[320] = "";
    for (uint32_t l = 0; l < info->layerCount; l++) {
        const XrCompositionLayerProjection *p = (const XrCompositionLayerProjection *)info->layers[l];
        if (p->type != XR_TYPE_COMPOSITION_LAYER_PROJECTION || p->viewCount != 2) return XR_ERROR_LAYER_INVALID;
        size_t start = strlen(detail);
        snprintf(detail + start, sizeof detail - start, " flags=0x%llx", (unsigned long long)p->layerFlags);
        for (uint32_t v = 0; v < 2; v++) {
            const XrCompositionLayerProjectionView *pv = &p->views[v];
            if (pv->type != XR_TYPE_COMPOSITION_LAYER_PROJECTION_VIEW) return XR_ERROR_LAYER_INVALID;
            const Swapchain *sc = swapchain_of(pv->subImage.swapchain);
            if (sc->acquired) return XR_ERROR_LAYER_INVALID; /* submitted while still acquired */
            if ((uint32_t)pv->subImage.imageRect.extent.width != sc->width || pv->subImage.imageArrayIndex >= sc->layers)
                return XR_ERROR_SWAPCHAIN_RECT_INVALID;
            const XrCompositionLayerDepthInfoKHR *d = (const XrCompositionLayerDepthInfoKHR *)pv->next;
            if (d && d->type != XR_TYPE_COMPOSITION_LAYER_DEPTH_INFO_KHR) return XR_ERROR_LAYER_INVALID;
            size_t used = strlen(detail);
            int layer = (int)pv->subImage.imageArrayIndex; /* corner and centre pixels of what was submitted */
            char depth[64] = "";
            if (d) snprintf(depth, sizeof depth, ":depth%g-%g", d->nearZ, d->farZ);
            snprintf(detail + used, sizeof detail - used, " view%u=layer%u:%ux%d:%08x/%08x/%.3f:fov%.2f%s", v, (unsigned)layer,
                     sc->width, pv->subImage.imageRect.extent.height, pixel(sc, layer, 0, 0),
                     pixel(sc, layer, (int)sc->width / 2, (int)sc->height / 2), covered(sc, layer), pv->fov.angleLeft, depth);
        }
    }
    note("end_frame %d time=%lld blend=%s layers=%u%s", frames, (long long)info->displayTime,
         BLEND_NAMES[info->environmentBlendMode], info->layerCount, detail);
    frames++;
    if (state == XR_SESSION_STATE_FOCUSED) focused_frames++;
    if (opt_lose_after >= 0 && !loss_done && frames >= opt_lose_after) {
        if (!opt_silent_loss) push_state(XR_SESSION_STATE_LOSS_PENDING); /* for this session: the next gets a new handle */
        loss_done = 1; session_lost = 1; polls_failed = 0;
        return XR_SUCCESS;
    }
    if (opt_lose_instance_after >= 0 && !instance_loss_done && frames >= opt_lose_instance_after) {
        note("instance_lost");
        instance_lost = 1; instance_loss_done = 1;
        setenv("MEDVERSE_XR_TEST_INSTANCE_LOST", "1", 1);
        return XR_SUCCESS;
    }
    if (opt_stop_after >= 0 && focused_frames >= opt_stop_after) stopping = 1;
    advance_state();
    return XR_SUCCESS;
}

/* ---- dispatch -------------------------------------------------------------------------------------- */
static XrResult XRAPI_CALL GetInstanceProcAddr(XrInstance instance, const char *name, PFN_xrVoidFunction *fn);

#define ENTRY(n) {"xr" #n, (PFN_xrVoidFunction)n}
static const struct { const char *name; PFN_xrVoidFunction fn; } TABLE[] = {
    ENTRY(GetInstanceProcAddr), ENTRY(EnumerateInstanceExtensionProperties), ENTRY(CreateInstance),
    ENTRY(DestroyInstance), ENTRY(GetInstanceProperties), ENTRY(PollEvent), ENTRY(ResultToString),
    ENTRY(StructureTypeToString), ENTRY(GetSystem), ENTRY(GetSystemProperties), ENTRY(EnumerateViewConfigurations),
    ENTRY(EnumerateViewConfigurationViews), ENTRY(EnumerateEnvironmentBlendModes),
    ENTRY(GetOpenGLGraphicsRequirementsKHR), ENTRY(StringToPath), ENTRY(PathToString), ENTRY(CreateActionSet),
    ENTRY(DestroyActionSet), ENTRY(CreateAction), ENTRY(DestroyAction), ENTRY(SuggestInteractionProfileBindings),
    ENTRY(AttachSessionActionSets), ENTRY(GetCurrentInteractionProfile), ENTRY(SyncActions),
    ENTRY(GetActionStateBoolean), ENTRY(GetActionStateFloat), ENTRY(GetActionStateVector2f), ENTRY(GetActionStatePose),
    ENTRY(ApplyHapticFeedback), ENTRY(CreateSession), ENTRY(DestroySession), ENTRY(BeginSession), ENTRY(EndSession),
    ENTRY(RequestExitSession), ENTRY(EnumerateReferenceSpaces), ENTRY(CreateReferenceSpace), ENTRY(CreateActionSpace),
    ENTRY(DestroySpace), ENTRY(LocateSpace), ENTRY(EnumerateSwapchainFormats), ENTRY(CreateSwapchain),
    ENTRY(DestroySwapchain), ENTRY(EnumerateSwapchainImages), ENTRY(AcquireSwapchainImage), ENTRY(WaitSwapchainImage),
    ENTRY(ReleaseSwapchainImage), ENTRY(WaitFrame), ENTRY(BeginFrame), ENTRY(LocateViews), ENTRY(EndFrame),
};

/* Functions of XR_EXT_hand_tracking: only for an instance that enabled it. */
static const struct { const char *name; PFN_xrVoidFunction fn; } HAND_TABLE[] = {
    ENTRY(CreateHandTrackerEXT), ENTRY(DestroyHandTrackerEXT), ENTRY(LocateHandJointsEXT),
};

static XrResult XRAPI_CALL GetInstanceProcAddr(XrInstance instance, const char *name, PFN_xrVoidFunction *fn) {
    (void)instance;
    for (size_t k = 0; k < sizeof TABLE / sizeof TABLE[0]; k++)
        if (!strcmp(TABLE[k].name, name)) { *fn = TABLE[k].fn; return XR_SUCCESS; }
    for (size_t k = 0; hands_enabled && k < sizeof HAND_TABLE / sizeof HAND_TABLE[0]; k++)
        if (!strcmp(HAND_TABLE[k].name, name)) { *fn = HAND_TABLE[k].fn; return XR_SUCCESS; }
    *fn = NULL;
    return XR_ERROR_FUNCTION_UNSUPPORTED;
}

EXPORT XrResult xrNegotiateLoaderRuntimeInterface(const NegotiateLoaderInfo *info, NegotiateRuntimeRequest *request) {
    if (!info || info->structType != LOADER_INFO || !request || request->structType != RUNTIME_REQUEST)
        return XR_ERROR_INITIALIZATION_FAILED;
    if (info->minInterfaceVersion > 1 || info->maxInterfaceVersion < 1) return XR_ERROR_INITIALIZATION_FAILED;
    request->runtimeInterfaceVersion = 1;
    request->runtimeApiVersion = XR_MAKE_VERSION(1, 0, 20);
    request->getInstanceProcAddr = GetInstanceProcAddr;
    return XR_SUCCESS;
}
