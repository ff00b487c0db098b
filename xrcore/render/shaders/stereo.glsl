// Which eye a vertex belongs to, for the three stereo modes. The renderer prepends
// "#version", the extension lines and "#define STEREO_MODE n" (0 two passes, 1 one pass writing
// gl_Layer from instanced draws, 2 one pass with OVR_multiview2) before this file.
#if STEREO_MODE == 2
  #define EYE int(gl_ViewID_OVR)
  #define INSTANCE gl_InstanceID
#elif STEREO_MODE == 1
  // each draw is instanced twice per object instance: even instances are the left eye
  #define EYE (gl_InstanceID & 1)
  #define INSTANCE (gl_InstanceID >> 1)
#else
  uniform int u_eye_index;
  #define EYE u_eye_index
  #define INSTANCE gl_InstanceID
#endif

uniform mat4 u_view_proj[2];  // per eye: projection * view (world -> clip)
uniform vec3 u_eye_pos[2];    // per eye: position in world, metres

void set_layer(int eye) {
#if STEREO_MODE == 1
  gl_Layer = eye;
#endif
}
